# Control: stock training on the shortened 48k schedule, without InfoBatch.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'

max_iters = 48000
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
