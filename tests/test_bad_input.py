"""Edge cases and bad input around the sampler, hook and state."""
import copy
import math
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from mmib.core import PrunedStream, plan_virtual_epoch
from mmib.hooks import InfoBatchHook
from mmib.hooks.infobatch_hook import _verify_order
from mmib.samplers import InfiniteInfoBatchSampler, SampledBatch
from test_sampler import IndexDataset, _sampler, _train


def test_prune_ratio_near_one():
    scores = torch.arange(100, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    plan = plan_virtual_epoch(scores, 0.999, generator)
    assert plan.num_pruned == 49
    assert plan.num_planned == 51
    assert plan.well_learned_weight == pytest.approx(50.0)
    assert int(plan.upweighted.sum()) == 1


def test_delta_one_never_anneals():
    stream = PrunedStream(10, 0.5, 1.0, seed=0)
    stream.set_clock(0, 20, 2)
    assert stream.anneal_position == 40  # the first position after training


def test_short_run_prunes_nothing():
    sampler = _sampler(50, batch_size=2, max_iters=10)
    history = _train([sampler], 10, 2)
    weights = torch.cat([batch.weights for batch in history[0]])
    assert torch.all(weights == 1)
    assert sampler.stream.cumulative_pruned == 0


def test_all_nonfinite_scores_keep_state_clean():
    sampler = _sampler(8, batch_size=2)
    iterator = iter(sampler)
    for _ in range(8):
        next(iterator)
        if len(sampler._issued) % 2 == 0:
            batch = sampler.pop_batch(2)
            sampler.stream.update_scores(batch.indices, torch.tensor([math.nan, math.inf]))
    assert torch.isnan(sampler.stream.scores).all()
    state = sampler.state_dict()
    assert torch.isnan(state['scores']).all()


def test_wrong_batch_size_rejected():
    sampler = _sampler(8, batch_size=2)
    iterator = iter(sampler)
    for _ in range(4):
        next(iterator)
    with pytest.raises(RuntimeError, match='configured for 2'):
        sampler.pop_batch(3)


def test_unsampled_batch_rejected():
    sampler = _sampler(8, batch_size=2)
    iter(sampler)
    with pytest.raises(RuntimeError, match='not sampled by this sampler'):
        sampler.pop_batch(2)


class _PathDataset:
    def __init__(self, paths):
        self.paths = paths

    def get_data_info(self, index):
        return dict(img_path=self.paths[index])


class _Sample:
    def __init__(self, path):
        self.metainfo = dict(img_path=path)


def test_reordered_batch_detected():
    dataset = _PathDataset(['a.jpg', 'b.jpg', 'c.jpg'])
    batch = SampledBatch(0, torch.tensor([0, 1]), torch.ones(2), torch.zeros(2, dtype=torch.int64),
                         torch.zeros(1, dtype=torch.int64))
    _verify_order(dataset, batch, [_Sample('a.jpg'), _Sample('b.jpg')], iteration=3)
    with pytest.raises(RuntimeError, match='iteration 3.*index 0 \\(a.jpg\\).*b.jpg'):
        _verify_order(dataset, batch, [_Sample('b.jpg'), _Sample('a.jpg')], iteration=3)


def test_negative_consistency_interval_rejected():
    with pytest.raises(ValueError, match='consistency_check_interval'):
        InfoBatchHook(consistency_check_interval=-1)


def test_hook_survives_deepcopy_and_pickle():
    hook = InfoBatchHook(verify_sample_order=False, consistency_check_interval=7)
    for clone in (copy.deepcopy(hook), pickle.loads(pickle.dumps(hook))):
        assert clone.consistency_check_interval == 7
        assert clone.verify_sample_order is False


@pytest.mark.parametrize('context', ['spawn', 'forkserver'])
def test_sampler_with_spawned_workers(context):
    dataset = IndexDataset(10)
    sampler = InfiniteInfoBatchSampler(dataset, seed=0)
    sampler.configure(2, current_iter=0, max_iters=100)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2,
                        multiprocessing_context=context, persistent_workers=True)
    iterator = iter(loader)
    for _ in range(8):
        data = next(iterator)
        batch = sampler.pop_batch(len(data))
        assert batch.indices.tolist() == data.tolist()
        sampler.stream.update_scores(batch.indices, batch.indices.float())
    assert sampler.stream.cumulative_pruned > 0
    del iterator
