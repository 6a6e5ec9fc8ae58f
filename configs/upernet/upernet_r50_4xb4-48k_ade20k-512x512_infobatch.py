# InfoBatch on the 48k schedule: the four mmib lines on top of the 48k control.
_base_ = './upernet_r50_4xb4-48k_ade20k-512x512_plain.py'

custom_imports = dict(imports=['mmib'], allow_failed_imports=False)
model = dict(type='InfoBatchEncoderDecoder')
train_dataloader = dict(
    sampler=dict(type='InfiniteInfoBatchSampler', prune_ratio=0.5, delta=0.875))
custom_hooks = [dict(type='InfoBatchHook')]
