"""Per-image weighting for every supported mmseg loss and head layout.

Each model case runs on real CamVid crops in eval() mode (BN on running
stats, dropout off), so an image's loss does not depend on the rest of the
batch. K-Net runs in train() mode instead (see TRAIN_MODE_CASES). Two
checks per case:

* with all weights 1 the InfoBatch segmentor's losses and gradients equal
  stock mmseg's bit for bit;
* the gradient of a weighted batch equals the sum over images of
  ``w_i`` times the gradient with the one-hot weight of image ``i``.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import ConfigDict

from segdata import build_pair, load_batch, small_model_cfg, with_weights

NORM_CFG = dict(type='BN', requires_grad=True)
NUM_IMAGES = 3
WEIGHTS = [1.5, 0.0, 2.0]


@pytest.fixture(scope='module', autouse=True)
def single_thread():
    """Run on one thread: OpenMP threads contending for busy shared cores made
    these tiny convolutions over 10x slower than one thread on a 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope='module')
def batch(camvid_root):
    return load_batch(camvid_root, NUM_IMAGES, size=(64, 48))


@pytest.fixture(scope='module')
def batch_without_ignore(batch):
    """The same crops with ignored pixels relabelled as class 0."""
    relabelled = copy.deepcopy(batch)
    for sample in relabelled['data_samples']:
        labels = sample.gt_sem_seg.data
        labels[labels == 255] = 0
    return relabelled


def _loss_and_grads(model, batch, seed=0):
    """Return (loss dict, parameter gradients) of one training step's loss."""
    model.zero_grad()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    torch.manual_seed(seed)  # PointHead samples its training points at random
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return losses, grads


def _decode(**changes):
    """The small FCN decode head of ``small_model_cfg`` with ``changes``."""
    head = copy.deepcopy(small_model_cfg()['decode_head'])
    head.update(changes)
    return head


def _fcn(in_channels, in_index, channels, loss):
    return dict(type='FCNHead', in_channels=in_channels, in_index=in_index, channels=channels,
                num_convs=1, concat_input=False, dropout_ratio=0.1, num_classes=150,
                norm_cfg=NORM_CFG, align_corners=False, loss_decode=loss)


def _ce(**kwargs):
    return dict(type='CrossEntropyLoss', **dict(dict(loss_weight=1.0), **kwargs))


def _pointrend():
    """PointRend on a small ResNet + FPN; PointHead computes its own loss_by_feat."""
    backbone = dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                    num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 1, 1),
                    strides=(1, 2, 2, 2), norm_cfg=NORM_CFG)
    preprocessor = dict(small_model_cfg()['data_preprocessor'], size_divisor=32)
    return small_model_cfg(
        segmentor='InfoBatchCascadeEncoderDecoder', num_stages=2, auxiliary=False,
        backbone=backbone, data_preprocessor=preprocessor,
        neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16, num_outs=4),
        decode_head=[
            dict(type='FPNHead', in_channels=[16] * 4, in_index=[0, 1, 2, 3],
                 feature_strides=[4, 8, 16, 32], channels=16, dropout_ratio=-1,
                 num_classes=150, norm_cfg=NORM_CFG, align_corners=False, loss_decode=_ce()),
            dict(type='PointHead', in_channels=[16], in_index=[0], channels=16, num_fcs=1,
                 coarse_pred_each_layer=True, dropout_ratio=-1, num_classes=150,
                 align_corners=False, loss_decode=_ce())],
        train_cfg=ConfigDict(num_points=64, oversample_ratio=3, importance_sample_ratio=0.75),
        test_cfg=ConfigDict(mode='whole', subdivision_steps=2, subdivision_num_points=64,
                            scale_factor=2))


def _knet():
    """K-Net: the losses live in the nested kernel_generate_head, called once per stage."""
    update_head = dict(
        type='KernelUpdateHead', num_classes=150, num_ffn_fcs=2, num_heads=2, num_mask_fcs=1,
        feedforward_channels=32, in_channels=16, out_channels=16, dropout=0.0,
        conv_kernel_size=1, ffn_act_cfg=dict(type='ReLU', inplace=True), with_ffn=True,
        feat_transform_cfg=dict(conv_cfg=dict(type='Conv2d'), act_cfg=None),
        kernel_updator_cfg=dict(type='KernelUpdator', in_channels=16, feat_channels=16,
                                out_channels=16, act_cfg=dict(type='ReLU', inplace=True),
                                norm_cfg=dict(type='LN')))
    return small_model_cfg(auxiliary=False, decode_head=dict(
        type='IterativeDecodeHead', num_stages=1, kernel_update_head=[update_head],
        kernel_generate_head=_fcn(64, 3, 16, _ce())))


CLASS_WEIGHT = [0.5 + (index % 7) / 10 for index in range(150)]

MODEL_CASES = {
    'ce': small_model_cfg(),
    'ce_avg_non_ignore': small_model_cfg(decode_loss=_ce(avg_non_ignore=True)),
    'ce_sigmoid': small_model_cfg(decode_loss=_ce(use_sigmoid=True, loss_weight=0.7)),
    'ce_sigmoid_avg_non_ignore': small_model_cfg(
        decode_loss=_ce(use_sigmoid=True, avg_non_ignore=True)),
    'ce_sum': small_model_cfg(decode_loss=_ce(reduction='sum', loss_weight=1e-3)),
    'ce_none': small_model_cfg(decode_loss=_ce(reduction='none')),
    'dice': small_model_cfg(decode_loss=dict(type='DiceLoss', loss_weight=0.5)),
    'dice_softmax_naive': small_model_cfg(
        decode_loss=dict(type='DiceLoss', use_sigmoid=False, naive_dice=True)),
    'lovasz_per_image': small_model_cfg(
        decode_loss=dict(type='LovaszLoss', per_image=True, loss_weight=0.3)),
    'tversky': small_model_cfg(decode_loss=dict(type='TverskyLoss', loss_weight=0.5)),
    'tversky_class_weight': small_model_cfg(
        decode_loss=dict(type='TverskyLoss', class_weight=CLASS_WEIGHT)),
    'loss_list': small_model_cfg(decode_loss=[
        _ce(), dict(type='DiceLoss', loss_weight=0.5),
        dict(type='LovaszLoss', per_image=True, loss_weight=0.3),
        dict(type='TverskyLoss', loss_weight=0.2)]),
    'loss_list_same_name': small_model_cfg(decode_loss=[_ce(), _ce(loss_weight=0.5)]),
    'auxiliary_list': small_model_cfg(auxiliary_head=[
        _fcn(32, 2, 8, _ce(loss_weight=0.4)),
        _fcn(16, 1, 8, dict(type='DiceLoss', loss_weight=0.2))]),
    'ohem_thresh': small_model_cfg(decode_head=_decode(
        sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=500))),
    'ohem_loss_ranked': small_model_cfg(decode_head=_decode(
        sampler=dict(type='OHEMPixelSampler', thresh=None, min_kept=500))),
    'dahead': small_model_cfg(decode_head=dict(
        type='DAHead', in_channels=64, in_index=3, channels=16, pam_channels=8,
        dropout_ratio=0.1, num_classes=150, norm_cfg=NORM_CFG, align_corners=False,
        loss_decode=_ce())),
    'ocrnet_cascade': small_model_cfg(
        segmentor='InfoBatchCascadeEncoderDecoder', num_stages=2, auxiliary=False,
        decode_head=[
            _fcn(32, 2, 8, _ce(loss_weight=0.4)),
            dict(type='OCRHead', in_channels=64, in_index=3, channels=16, ocr_channels=8,
                 dropout_ratio=0.1, num_classes=150, norm_cfg=NORM_CFG, align_corners=False,
                 loss_decode=_ce())]),
    'enchead_se_loss': small_model_cfg(decode_head=dict(
        type='EncHead', in_channels=[16, 32, 64], in_index=(1, 2, 3), channels=16,
        num_codes=8, use_se_loss=True, dropout_ratio=0.1, num_classes=150,
        norm_cfg=NORM_CFG, align_corners=False, loss_decode=_ce(),
        loss_se_decode=_ce(use_sigmoid=True, loss_weight=0.2))),
    'stdc_boundary_head': small_model_cfg(auxiliary_head=dict(
        type='STDCHead', in_channels=16, channels=8, num_convs=1, num_classes=2,
        boundary_threshold=0.1, in_index=1, norm_cfg=NORM_CFG, concat_input=False,
        align_corners=True, loss_decode=[
            _ce(use_sigmoid=True), dict(type='DiceLoss', loss_name='loss_dice')])),
    'segmenter_head': small_model_cfg(auxiliary=False, decode_head=dict(
        type='SegmenterMaskTransformerHead', in_channels=64, channels=64, num_classes=150,
        num_layers=1, num_heads=2, embed_dims=64, dropout_ratio=0.0, loss_decode=_ce())),
    'pointrend_cascade': _pointrend(),
    'knet_nested_head': _knet(),
}

# K-Net's decode head returns every stage only in training mode. In train()
# mode BN uses the statistics of the whole batch, which the per-image
# weights do not change, and _loss_and_grads seeds dropout.
TRAIN_MODE_CASES = {'knet_nested_head'}

# Cases whose stock loss needs labels without ignored pixels (see the
# class_weight rejection test for the batch with ignored pixels).
MODEL_CASES_WITHOUT_IGNORE = {
    'ce_class_weight': small_model_cfg(decode_loss=_ce(class_weight=CLASS_WEIGHT)),
    'ce_class_weight_avg_non_ignore': small_model_cfg(
        decode_loss=_ce(class_weight=CLASS_WEIGHT, avg_non_ignore=True)),
}

ALL_CASES = [(name, False) for name in MODEL_CASES] + [
    (name, True) for name in MODEL_CASES_WITHOUT_IGNORE]


def _set_mode(name, *models):
    for model in models:
        model.train(name in TRAIN_MODE_CASES)


def _case(name, without_ignore, batch, batch_without_ignore):
    if without_ignore:
        return MODEL_CASES_WITHOUT_IGNORE[name], batch_without_ignore
    return MODEL_CASES[name], batch


@pytest.mark.parametrize('name,without_ignore', ALL_CASES, ids=[name for name, _ in ALL_CASES])
def test_unit_weights_match_stock(name, without_ignore, batch, batch_without_ignore):
    cfg, images = _case(name, without_ignore, batch, batch_without_ignore)
    stock, infobatch = build_pair(cfg)
    _set_mode(name, stock, infobatch)
    stock_losses, stock_grads = _loss_and_grads(stock, images)
    ours_losses, ours_grads = _loss_and_grads(
        infobatch, with_weights(copy.deepcopy(images), [1] * NUM_IMAGES))

    assert set(ours_losses) == set(stock_losses)
    for key in stock_losses:
        assert torch.equal(ours_losses[key], stock_losses[key]), key
    assert set(ours_grads) == set(stock_grads)
    for param_name in stock_grads:
        assert torch.equal(ours_grads[param_name], stock_grads[param_name]), param_name
    scores = infobatch.infobatch_last['scores']
    assert scores.shape == (NUM_IMAGES,)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize('name,without_ignore', ALL_CASES, ids=[name for name, _ in ALL_CASES])
def test_weighted_gradient_is_sum(name, without_ignore, batch, batch_without_ignore):
    cfg, images = _case(name, without_ignore, batch, batch_without_ignore)
    _, model = build_pair(cfg)
    _set_mode(name, model)
    _, weighted_grads = _loss_and_grads(model, with_weights(copy.deepcopy(images), WEIGHTS))

    expected = {param_name: torch.zeros_like(grad) for param_name, grad in weighted_grads.items()}
    for image in range(NUM_IMAGES):
        one_hot = [1.0 if index == image else 0.0 for index in range(NUM_IMAGES)]
        _, grads = _loss_and_grads(model, with_weights(copy.deepcopy(images), one_hot))
        for param_name in expected:
            if param_name in grads:
                expected[param_name] += WEIGHTS[image] * grads[param_name]
    for param_name, grad in weighted_grads.items():
        assert torch.allclose(grad, expected[param_name], rtol=1e-4, atol=1e-6), param_name


def _record_calls(module, method_name):
    """Replace ``module.<method_name>`` with a recorder and return its list of outputs."""
    outputs = []
    original = getattr(module, method_name)

    def recorder(*args, **kwargs):
        result = original(*args, **kwargs)
        outputs.append(result.clone())
        return result

    setattr(module, method_name, recorder)
    return outputs


@pytest.mark.parametrize('name', ['ohem_thresh', 'ohem_loss_ranked'])
def test_ohem_selection_unchanged(name, batch):
    stock, infobatch = build_pair(MODEL_CASES[name])
    stock.eval(), infobatch.eval()
    stock_selection = _record_calls(stock.decode_head.sampler, 'sample')
    ours_selection = _record_calls(infobatch.decode_head.sampler, 'sample')
    _loss_and_grads(stock, batch)
    _loss_and_grads(infobatch, with_weights(copy.deepcopy(batch), WEIGHTS))

    assert len(stock_selection) == len(ours_selection) == 1
    assert torch.equal(ours_selection[0], stock_selection[0])
    selected_pixels = stock_selection[0]
    assert 0 < selected_pixels.sum() < selected_pixels.numel()  # OHEM drops some pixels


@pytest.mark.parametrize('name,calls', [
    ('dahead', 3), ('ocrnet_cascade', 2), ('loss_list', 4), ('enchead_se_loss', 2),
    ('auxiliary_list', 1), ('pointrend_cascade', 2), ('knet_nested_head', 2)])
def test_score_sums_every_decode_call(name, calls, batch):
    _, model = build_pair(MODEL_CASES[name])
    _set_mode(name, model)
    data = model.data_preprocessor(with_weights(copy.deepcopy(batch), [1] * NUM_IMAGES), True)
    with torch.no_grad():
        model(**data, mode='loss')
    recorded = model._loss_context.scores['decode']
    assert len(recorded) == calls
    every_call = recorded + model._loss_context.scores.get('auxiliary', [])
    expected = torch.stack(every_call).sum(0)
    assert torch.allclose(model.infobatch_last['scores'], expected, rtol=1e-6)


def test_auxiliary_list_scores_each_head(batch):
    _, model = build_pair(MODEL_CASES['auxiliary_list'])
    model.eval()
    data = model.data_preprocessor(with_weights(copy.deepcopy(batch), [1] * NUM_IMAGES), True)
    with torch.no_grad():
        model(**data, mode='loss')
    assert len(model._loss_context.scores['auxiliary']) == 2


# Loss modules called directly, on real labels and seeded random logits.

def _labels(batch):
    return torch.stack([s.gt_sem_seg.data for s in batch['data_samples']]).squeeze(1).long()


def _logits(labels, num_classes=150, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(labels.shape[0], num_classes, *labels.shape[1:], generator=generator)


def _wrapped_loss(loss_cfg, sampler=None):
    from mmseg.registry import MODELS

    from mmib.segmentors import LossContext, build_loss_hooks

    module = MODELS.build(loss_cfg)
    context = LossContext()
    build_loss_hooks(module, context, 'decode', sampler=sampler)
    return module, context


def _scored_call(module, context, logits, labels, weights=None, **kwargs):
    weights = torch.ones(labels.shape[0]) if weights is None else torch.tensor(weights)
    with context.activate(weights):
        loss = module(logits, labels, ignore_index=255, **kwargs)
    return loss, context.scores['decode'][0]


@pytest.mark.parametrize('loss_cfg', [
    _ce(), _ce(use_sigmoid=True), dict(type='DiceLoss'),
    dict(type='TverskyLoss'), dict(type='LovaszLoss', loss_type='binary', per_image=True),
], ids=['ce', 'ce_sigmoid', 'dice', 'tversky', 'lovasz_binary'])
def test_all_ignored_image_scores_nan(loss_cfg, batch):
    labels = _labels(batch)
    labels[1] = 255
    binary = loss_cfg.get('loss_type') == 'binary'
    logits = _logits(labels, num_classes=1 if binary else 150)
    if binary:
        labels[labels != 255] = labels[labels != 255] % 2
    module, context = _wrapped_loss(loss_cfg)
    loss, scores = _scored_call(module, context, logits, labels)

    assert torch.isfinite(loss)
    assert torch.isnan(scores[1])
    assert torch.isfinite(scores[[0, 2]]).all()


@pytest.mark.parametrize('loss_cfg', [
    dict(type='LovaszLoss', per_image=True, loss_weight=0.3),
    dict(type='TverskyLoss', loss_weight=0.5, class_weight=CLASS_WEIGHT),
], ids=['lovasz', 'tversky'])
def test_image_score_equals_single_image_loss(loss_cfg, batch):
    from mmseg.registry import MODELS

    labels = _labels(batch)
    logits = _logits(labels)
    module, context = _wrapped_loss(loss_cfg)
    _, scores = _scored_call(module, context, logits, labels)
    stock = MODELS.build(loss_cfg)
    for image in range(NUM_IMAGES):
        alone = stock(logits[image:image + 1], labels[image:image + 1], ignore_index=255)
        assert torch.allclose(scores[image], alone, rtol=1e-5), image


def test_dice_score_ignores_ignored_pixels(batch):
    labels = _labels(batch)
    assert (labels == 255).any(1).any(1).all()  # every crop has ignored pixels
    logits = _logits(labels)
    module, context = _wrapped_loss(dict(type='DiceLoss'))
    loss, scores = _scored_call(module, context, logits, labels)

    changed = logits.clone()
    changed[(labels == 255).unsqueeze(1).expand_as(logits)] += 3.0
    module_again, context_again = _wrapped_loss(dict(type='DiceLoss'))
    changed_loss, changed_scores = _scored_call(module_again, context_again, changed, labels)
    # Stock Dice counts predictions at ignored pixels; the score does not.
    assert not torch.equal(changed_loss, loss)
    assert torch.allclose(changed_scores, scores, rtol=1e-6)


def test_ohem_unselected_image_scores_zero(batch):
    labels = _labels(batch)
    logits = _logits(labels)
    pixel_weight = torch.ones(labels.shape)
    pixel_weight[1] = 0
    module, context = _wrapped_loss(_ce())
    _, scores = _scored_call(module, context, logits, labels, weight=pixel_weight)
    assert scores[1] == 0
    assert (scores[[0, 2]] > 0).all()


def test_pass_through_with_reduction_override(batch):
    from mmseg.registry import MODELS

    labels = _labels(batch)
    logits = _logits(labels)
    module, context = _wrapped_loss(_ce(loss_weight=0.4))
    stock = MODELS.build(_ce(loss_weight=0.4))
    with context.activate(torch.tensor(WEIGHTS)):
        ours = module(logits, labels, ignore_index=255, reduction_override='none')
    assert torch.equal(ours, stock(logits, labels, ignore_index=255, reduction_override='none'))
    assert context.scores == {}


# Rejections, raised while the model is built (or at the first call where
# only the batch shows the problem).

def _build(cfg):
    from mmseg.registry import MODELS

    return MODELS.build(cfg)


def test_class_weight_with_ignored_labels_rejected(batch):
    from mmib.segmentors import UnsupportedLossError

    stock, model = build_pair(MODEL_CASES_WITHOUT_IGNORE['ce_class_weight'])
    stock.eval(), model.eval()
    with pytest.raises(IndexError):
        _loss_and_grads(stock, batch)
    with pytest.raises(UnsupportedLossError, match=r'class_weight.*\[255\]'):
        _loss_and_grads(model, with_weights(copy.deepcopy(batch), [1] * NUM_IMAGES))


@pytest.mark.parametrize('decode_loss,message', [
    (dict(type='LovaszLoss', per_image=False, reduction='none'), r'LovaszLoss\(per_image=True'),
    (dict(type='OhemCrossEntropy', thres=0.9, min_kept=1000), 'OHEMPixelSampler'),
    ([_ce(), dict(type='BoundaryLoss', loss_weight=20.0)], 'BoundaryLoss'),
    (_ce(use_mask=True), 'use_mask=False'),
    (dict(type='HuasdorffDisstanceLoss'), 'Supported losses: CrossEntropyLoss'),
], ids=['lovasz_batch', 'ohem_cross_entropy', 'boundary', 'ce_use_mask', 'hausdorff'])
def test_unsupported_loss_rejected(decode_loss, message):
    from mmib.segmentors import UnsupportedLossError

    with pytest.raises(UnsupportedLossError, match=message):
        _build(small_model_cfg(decode_loss=decode_loss))


@pytest.mark.parametrize('loss_cfg', [dict(type='DiceLoss'), dict(type='FocalLoss')],
                         ids=['dice', 'focal'])
def test_pixel_weights_rejected_where_stock_fails(loss_cfg, monkeypatch):
    from mmib.segmentors import UnsupportedLossError

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = small_model_cfg(decode_head=_decode(
        loss_decode=loss_cfg, sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=500)))
    with pytest.raises(UnsupportedLossError, match='OHEMPixelSampler'):
        _build(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason='FocalLoss runs on CUDA')
def test_focal_loss_rejected_without_cuda():
    from mmib.segmentors import UnsupportedLossError

    with pytest.raises(UnsupportedLossError, match='torch.cuda.is_available'):
        _build(small_model_cfg(decode_loss=dict(type='FocalLoss')))


def test_focal_loss_rejected_on_cpu_tensors(batch, monkeypatch):
    from mmib.segmentors import UnsupportedLossError

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    _, model = build_pair(small_model_cfg(decode_loss=dict(type='FocalLoss')))
    monkeypatch.undo()
    model.eval()
    with pytest.raises(UnsupportedLossError, match='pred is on cpu'):
        _loss_and_grads(model, with_weights(copy.deepcopy(batch), [1] * NUM_IMAGES))


def _mmseg_config_model(relative_path):
    """The model dict of one of mmseg's shipped configs, as InfoBatch would use it."""
    import mmseg
    from mmengine.config import Config

    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', relative_path)
    if not osp.isfile(path):
        pytest.skip(f'mmseg config {relative_path} is not installed')
    model = Config.fromfile(path, import_custom_modules=False).model.to_dict()
    model['type'] = 'InfoBatchEncoderDecoder'
    model['backbone'].pop('init_cfg', None)
    model.pop('pretrained', None)
    model['data_preprocessor'] = small_model_cfg()['data_preprocessor']
    return model


def _small_pidnet(model):
    model['backbone'].update(channels=8, ppm_channels=8, norm_cfg=NORM_CFG)
    model['decode_head'].update(in_channels=32, channels=8, norm_cfg=NORM_CFG)
    return model


@pytest.mark.parametrize('config,head', [
    ('mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py', 'Mask2FormerHead'),
    ('maskformer/maskformer_r50-d32_8xb2-160k_ade20k-512x512.py', 'MaskFormerHead'),
    ('pidnet/pidnet-s_2xb6-120k_1024x1024-cityscapes.py', 'PIDHead'),
    ('ddrnet/ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024.py', 'DDRHead'),
], ids=['mask2former', 'maskformer', 'pidnet', 'ddrnet'])
def test_unsupported_head_rejected(config, head):
    from mmib.segmentors import UnsupportedLossError

    with pytest.raises(UnsupportedLossError, match=f'decode head {head}'):
        _build(_mmseg_config_model(config))


def test_unsupported_head_subclass_rejected_after_build():
    """A renamed subclass escapes the config check but not the built-model check."""
    from mmseg.models.decode_heads import PIDHead
    from mmseg.registry import MODELS

    from mmib.segmentors import UnsupportedLossError

    @MODELS.register_module(name='RenamedPIDHeadForTest', force=True)
    class RenamedPIDHead(PIDHead):
        pass

    model = _small_pidnet(_mmseg_config_model('pidnet/pidnet-s_2xb6-120k_1024x1024-cityscapes.py'))
    model['decode_head']['type'] = 'RenamedPIDHeadForTest'
    with pytest.raises(UnsupportedLossError, match='BoundaryLoss'):
        _build(model)
