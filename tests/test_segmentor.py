"""InfoBatchEncoderDecoder against stock EncoderDecoder on real CamVid crops."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from segdata import build_pair, load_batch, small_model_cfg, with_weights


def _loss_and_grads(model, batch):
    model.zero_grad()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return losses, grads


@pytest.fixture(scope='module')
def batch(camvid_root):
    return load_batch(camvid_root, 4, size=(64, 48))


@pytest.mark.parametrize('decode_loss', [
    dict(type='CrossEntropyLoss', loss_weight=1.0),
    dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True),
    dict(type='CrossEntropyLoss', loss_weight=0.7, use_sigmoid=True),
])
def test_unit_weights_equal_stock_bitwise(batch, decode_loss):
    stock, infobatch = build_pair(small_model_cfg(decode_loss=decode_loss))
    stock.eval(), infobatch.eval()  # dropout off, BN on running stats
    stock_losses, stock_grads = _loss_and_grads(stock, batch)
    ours_losses, ours_grads = _loss_and_grads(infobatch, with_weights(copy.deepcopy(batch), [1] * 4))
    assert set(ours_losses) == set(stock_losses)
    for key in stock_losses:
        assert torch.equal(ours_losses[key], stock_losses[key]), key
    for name in stock_grads:
        assert torch.equal(ours_grads[name], stock_grads[name]), name


def test_weighted_loss_is_sum_of_scaled_contributions(batch):
    _, model = build_pair(small_model_cfg())
    model.eval()
    weights = [1.5, 0.0, 2.0, 1.0]
    weighted, weighted_grads = _loss_and_grads(model, with_weights(copy.deepcopy(batch), weights))
    expected = {k: torch.zeros(()) for k in weighted if 'loss' in k}
    expected_grads = {name: torch.zeros_like(g) for name, g in weighted_grads.items()}
    for image in range(4):
        one_hot = [1.0 if i == image else 0.0 for i in range(4)]
        contribution, grads = _loss_and_grads(model, with_weights(copy.deepcopy(batch), one_hot))
        for key in expected:
            expected[key] = expected[key] + weights[image] * contribution[key]
        for name in expected_grads:
            expected_grads[name] += weights[image] * grads.get(name, 0)
    for key in expected:
        assert torch.allclose(weighted[key], expected[key], rtol=1e-5, atol=1e-7), key
    for name in expected_grads:
        assert torch.allclose(weighted_grads[name], expected_grads[name],
                              rtol=1e-4, atol=1e-7), name


def test_contribution_is_stock_share(batch):
    """With the default mean over all pixels, image i's share is loss_i / B."""
    stock, model = build_pair(small_model_cfg(auxiliary=False))
    stock.eval(), model.eval()
    for image in range(4):
        one_hot = [1.0 if i == image else 0.0 for i in range(4)]
        share, _ = _loss_and_grads(model, with_weights(copy.deepcopy(batch), one_hot))
        single = {key: [value[image]] for key, value in batch.items()}
        alone, _ = _loss_and_grads(stock, single)
        assert torch.allclose(share['decode.loss_ce'], alone['decode.loss_ce'] / 4, rtol=1e-5)


def test_score_is_valid_pixel_mean(batch):
    _, model = build_pair(small_model_cfg(auxiliary=False, score_source='decode'))
    model.eval()
    data = model.data_preprocessor(with_weights(copy.deepcopy(batch), [1] * 4, [10, 11, 12, 13]), True)
    with torch.no_grad():
        model(**data, mode='loss')
        logits = model.decode_head(model.extract_feat(data['inputs']))
        labels = torch.stack([s.gt_sem_seg.data for s in data['data_samples']]).squeeze(1)
        logits = F.interpolate(logits, size=labels.shape[1:], mode='bilinear', align_corners=False)
        pixel_loss = F.cross_entropy(logits, labels, ignore_index=255, reduction='none')
    valid = labels != 255
    expected = (pixel_loss * valid).flatten(1).sum(1) / valid.flatten(1).sum(1)
    last = model.infobatch_last
    assert last['indices'].dtype == torch.int64
    assert last['indices'].tolist() == [10, 11, 12, 13]
    assert torch.allclose(last['scores'], expected, rtol=1e-5)


def test_score_sources_differ_by_auxiliary(batch):
    scores = {}
    for source in ('all', 'decode'):
        _, model = build_pair(small_model_cfg(score_source=source))
        model.eval()
        data = model.data_preprocessor(with_weights(copy.deepcopy(batch), [1] * 4), True)
        with torch.no_grad():
            model(**data, mode='loss')
        scores[source] = model.infobatch_last['scores']
    assert torch.all(scores['all'] > scores['decode'])


def test_all_ignored_image_gets_nan_score(batch):
    _, model = build_pair(small_model_cfg())
    model.eval()
    ignored = copy.deepcopy(batch)
    ignored['data_samples'][1].gt_sem_seg.data[...] = 255
    data = model.data_preprocessor(with_weights(ignored, [1.0, 2.0, 1.0, 1.0]), True)
    losses = model(**data, mode='loss')
    scores = model.infobatch_last['scores']
    assert torch.isnan(scores[1])
    assert torch.isfinite(scores[[0, 2, 3]]).all()
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_without_weights_trains_as_stock_and_warns_once(batch, caplog):
    stock, model = build_pair(small_model_cfg())
    stock.eval(), model.eval()
    stock_losses, _ = _loss_and_grads(stock, batch)
    first, _ = _loss_and_grads(model, batch)
    _loss_and_grads(model, batch)
    for key in stock_losses:
        assert torch.equal(first[key], stock_losses[key])
    assert model._warned_without_weights
    assert model.infobatch_last is None


def test_unsupported_loss_rejected_at_build():
    from mmseg.registry import MODELS

    from mmib.segmentors import UnsupportedLossError

    cfg = small_model_cfg(decode_loss=dict(type='LovaszLoss', per_image=False,
                                           reduction='none', loss_weight=1.0))
    with pytest.raises(UnsupportedLossError, match='LovaszLoss'):
        MODELS.build(cfg)


def test_bad_score_source_rejected():
    from mmseg.registry import MODELS

    with pytest.raises(ValueError, match='score_source'):
        MODELS.build(small_model_cfg(score_source='aux'))


def test_segmentor_survives_deepcopy_and_pickle(batch):
    _, model = build_pair(small_model_cfg())
    model.eval()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        data = clone.data_preprocessor(with_weights(copy.deepcopy(batch), [1, 2, 1, 1]), True)
        clone(**data, mode='loss')
        assert clone.infobatch_last['scores'].shape == (4,)
        # The clone's losses report to the clone, not to the original.
        assert clone.decode_head.loss_decode.forward.context is clone._loss_context
