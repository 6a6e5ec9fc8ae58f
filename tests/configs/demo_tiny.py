# The CPU demo config shrunk for end-to-end tests: 40 training images,
# 64x64 crops, 10 validation images, validation and checkpoints every 20
# iterations. A virtual epoch is 10 iterations long before pruning.
_base_ = '../../configs/demo/fcn_r18-mini_infobatch_cpu-demo.py'

crop_size = (64, 64)
max_iters = 40
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(320, 80), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 80), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    num_workers=2,
    dataset=dict(indices=40, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(indices=10, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=20)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=20, max_keep_ckpts=3),
    visualization=dict(type='SegVisualizationHook', draw=False))
