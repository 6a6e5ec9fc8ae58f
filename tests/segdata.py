"""Helpers that turn real images into mmseg training batches for tests."""
import glob
import os.path as osp

import torch
from mmengine.dataset import Compose, pseudo_collate

import mmib  # noqa: F401  (registers mmib and imports mmseg's registries)
from mmseg.utils import register_all_modules

register_all_modules(init_default_scope=True)


def load_batch(data_root, num_images, size=(64, 48), split='training', start=0):
    """Load ``num_images`` real pairs resized to ``size`` (width, height).

    Returns the collated batch that a DataLoader would give the model.
    """
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', scale=size, keep_ratio=False),
        dict(type='PackSegInputs'),
    ])
    images = sorted(glob.glob(osp.join(data_root, 'images', split, '*.jpg')))
    samples = []
    for path in images[start:start + num_images]:
        stem = osp.splitext(osp.basename(path))[0]
        seg_map = osp.join(data_root, 'annotations', split, stem + '.png')
        samples.append(pipeline(dict(img_path=path, seg_map_path=seg_map,
                                     reduce_zero_label=True, seg_fields=[])))
    return pseudo_collate(samples)


def small_model_cfg(segmentor='InfoBatchEncoderDecoder', decode_loss=None,
                    auxiliary=True, auxiliary_loss=None, **kwargs):
    """A small FCN with an optional auxiliary head, like the demo config."""
    norm_cfg = dict(type='BN', requires_grad=True)
    decode_loss = decode_loss or dict(type='CrossEntropyLoss', loss_weight=1.0)
    cfg = dict(
        type=segmentor,
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
            size_divisor=8),
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                      num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
                      strides=(1, 2, 1, 1), norm_cfg=norm_cfg, contract_dilation=True),
        decode_head=dict(type='FCNHead', in_channels=64, in_index=3, channels=16,
                         num_convs=1, concat_input=False, dropout_ratio=0.1,
                         num_classes=150, norm_cfg=norm_cfg, align_corners=False,
                         loss_decode=decode_loss),
        train_cfg=dict(), test_cfg=dict(mode='whole'))
    if auxiliary:
        cfg['auxiliary_head'] = dict(
            type='FCNHead', in_channels=32, in_index=2, channels=8, num_convs=1,
            concat_input=False, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=auxiliary_loss or dict(type='CrossEntropyLoss', loss_weight=0.4))
    cfg.update(kwargs)
    return cfg


def build_pair(cfg, seed=0):
    """Build a stock segmentor and an InfoBatch one with identical weights."""
    from mmseg.registry import MODELS

    torch.manual_seed(seed)
    infobatch = MODELS.build(cfg)
    stock_cfg = dict(cfg)
    stock_cfg['type'] = cfg['type'].replace('InfoBatch', '')
    stock_cfg.pop('score_source', None)
    stock = MODELS.build(stock_cfg)
    stock.load_state_dict(infobatch.state_dict())
    return stock, infobatch


def with_weights(batch, weights, indices=None):
    """Attach InfoBatch metainfo as InfoBatchHook does."""
    from mmib.segmentors import INDEX_KEY, WEIGHT_KEY

    indices = indices if indices is not None else range(len(weights))
    for sample, weight, index in zip(batch['data_samples'], weights, indices):
        sample.set_metainfo({WEIGHT_KEY: float(weight), INDEX_KEY: int(index)})
    return batch
