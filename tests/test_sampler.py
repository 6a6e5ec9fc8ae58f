"""Tests of InfiniteInfoBatchSampler: stream contract, prefetch, ranks, state."""
import copy
import math
import pickle

import pytest
import torch
from mmengine.logging import MessageHub
from torch.utils.data import DataLoader, Dataset

from mmib.samplers import InfiniteInfoBatchSampler


class IndexDataset(Dataset):
    """Returns its own index, so a batch shows which samples it holds."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return index


def _sampler(size, rank=0, world_size=1, batch_size=2, max_iters=1000, **kwargs):
    kwargs.setdefault('seed', 0)
    sampler = InfiniteInfoBatchSampler(IndexDataset(size), **kwargs)
    sampler.rank, sampler.world_size = rank, world_size
    sampler.configure(batch_size, current_iter=0, max_iters=max_iters)
    return sampler


def _score_of(indices):
    """A deterministic fake loss: low for even indices."""
    return (indices % 2).float() + indices.float() / 1000


def _train(samplers, num_iters, batch_size):
    """Run the sampling/consumption cycle of num_iters lockstep iterations.

    Returns per rank a list of (indices, weights, virtual_epochs) batches.
    """
    iterators = [iter(s) for s in samplers]
    history = [[] for _ in samplers]
    for _ in range(num_iters):
        all_indices = []
        for rank, (sampler, iterator) in enumerate(zip(samplers, iterators)):
            drawn = [next(iterator) for _ in range(batch_size)]
            batch = sampler.pop_batch(batch_size)
            assert batch.indices.tolist() == drawn
            history[rank].append(batch)
            all_indices.append(batch.indices)
        gathered = torch.cat(all_indices)
        for sampler in samplers:
            sampler.stream.update_scores(gathered, _score_of(gathered))
    return history


def test_first_virtual_epoch_is_full_permutation():
    sampler = _sampler(10)
    history = _train([sampler], 5, 2)
    seen = torch.cat([b.indices for b in history[0]]).tolist()
    assert sorted(seen) == list(range(10))
    assert all(torch.all(b.weights == 1) for b in history[0])


def test_pruning_starts_after_scores():
    sampler = _sampler(20)
    history = _train([sampler], 40, 2)
    epochs = torch.cat([b.virtual_epochs for b in history[0]])
    indices = torch.cat([b.indices for b in history[0]])
    weights = torch.cat([b.weights for b in history[0]])
    second = indices[epochs == 1]
    assert second.numel() < 20  # pruned
    assert len(set(second.tolist())) == second.numel()
    assert torch.any(weights[epochs == 1] > 1)


def test_prune_ratio_zero_matches_infinite_sampler():
    from mmengine.dataset import InfiniteSampler

    dataset = IndexDataset(13)
    stock = InfiniteSampler(dataset, shuffle=True, seed=7)
    ours = _sampler(13, seed=7, prune_ratio=0.0, batch_size=1)
    stock_iter, ours_iter = iter(stock), iter(ours)
    for _ in range(60):
        expected = next(stock_iter)
        assert next(ours_iter) == expected
        batch = ours.pop_batch(1)
        ours.stream.update_scores(batch.indices, torch.rand(1))
        assert batch.weights.item() == 1.0


@pytest.mark.parametrize('size,world_size,batch_size', [
    (20, 2, 2), (21, 2, 3), (5, 2, 4), (3, 4, 2), (17, 3, 1)])
def test_ranks_partition_each_virtual_epoch(size, world_size, batch_size):
    samplers = [_sampler(size, rank, world_size, batch_size) for rank in range(world_size)]
    history = _train(samplers, 60, batch_size)
    reference = samplers[0].stream
    per_epoch = {}
    for rank_batches in history:
        for batch in rank_batches:
            for index, epoch, weight in zip(batch.indices.tolist(),
                                            batch.virtual_epochs.tolist(),
                                            batch.weights.tolist()):
                per_epoch.setdefault(epoch, []).append((index, weight))
    for sampler in samplers[1:]:
        assert torch.equal(sampler.stream.scores, reference.scores, ) or torch.allclose(
            sampler.stream.scores, reference.scores, equal_nan=True)
    complete_epochs = sorted(per_epoch)[:-1]  # the last one may be partial
    assert len(complete_epochs) >= 2
    weights_by_index = {}
    for epoch in complete_epochs:
        entries = per_epoch[epoch]
        indices = [index for index, _ in entries]
        assert len(indices) == len(set(indices)), f'epoch {epoch} repeats a sample'
        summary_pruned = size - len(indices)
        assert summary_pruned >= 0
        for index, weight in entries:
            weights_by_index.setdefault((epoch, index), set()).add(weight)
    assert all(len(w) == 1 for w in weights_by_index.values())


def test_len_constant_and_set_epoch_noop():
    sampler = _sampler(10)
    iterator = iter(sampler)
    first = [next(iterator) for _ in range(4)]
    sampler.set_epoch(5)
    assert len(sampler) == 10
    assert sampler.pop_batch(2).indices.tolist() == first[:2]


def test_reiter_restarts_at_consumed_position():
    sampler = _sampler(10)
    iterator = iter(sampler)
    drawn = [next(iterator) for _ in range(6)]  # three batches sampled
    sampler.pop_batch(2)  # one trained
    again = iter(sampler)
    assert [next(again) for _ in range(4)] == drawn[2:6]


class RecordingSampler(InfiniteInfoBatchSampler):
    """Logs each sample's weight at the moment it is sampled, by position."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decided = {}

    def _rank_indices(self, start):
        for index in super()._rank_indices(start):
            ordinal, _, weight, _ = self._issued[-1]
            self.decided.setdefault(start + ordinal, weight)
            yield index


def test_prefetch_weights_bound_at_sampling():
    """Two persistent workers read ahead; weights applied are the sampled ones."""
    dataset = IndexDataset(12)
    sampler = RecordingSampler(dataset, seed=3, prune_ratio=0.5)
    sampler.configure(2, current_iter=0, max_iters=10_000)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2,
                        persistent_workers=True, prefetch_factor=2)
    iterator = iter(loader)
    crossed = set()
    for step in range(120):
        data = next(iterator)
        batch = sampler.pop_batch(len(data))
        assert batch.indices.tolist() == data.tolist()
        decided = [sampler.decided[batch.start + offset] for offset in range(len(data))]
        assert batch.weights.tolist() == decided, step
        crossed.update(batch.virtual_epochs.tolist())
        # Scores change every step, so a plan looked up late would differ.
        sampler.stream.update_scores(batch.indices, torch.rand(2) + step % 3)
        # The sampler runs ahead of training by num_workers * prefetch_factor.
        assert len(sampler._issued) >= 1
    assert len(crossed) >= 10
    del iterator


def test_unconfigured_sampler_raises_once_training_started():
    sampler = InfiniteInfoBatchSampler(IndexDataset(4), seed=0)
    hub = MessageHub.get_instance('mmib-test-unconfigured')
    iterator = iter(sampler)
    next(iterator)  # building the DataLoader iterator is allowed
    hub.update_info('loop_stage', 'train')
    try:
        with pytest.raises(RuntimeError, match='InfoBatchHook'):
            next(iterator)
    finally:
        hub.update_info('loop_stage', 'val')


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(prune_ratio=1.0), ValueError, 'prune_ratio'),
    (dict(prune_ratio=-0.1), ValueError, 'prune_ratio'),
    (dict(prune_ratio='0.5'), TypeError, 'prune_ratio'),
    (dict(prune_ratio=math.nan), ValueError, 'prune_ratio'),
    (dict(delta=0.0), ValueError, 'delta'),
    (dict(delta=1.5), ValueError, 'delta'),
    (dict(delta='1'), TypeError, 'delta'),
    (dict(shuffle='yes'), TypeError, 'shuffle'),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        InfiniteInfoBatchSampler(IndexDataset(4), seed=0, **kwargs)


def test_empty_dataset_rejected():
    with pytest.raises(ValueError, match='empty dataset'):
        InfiniteInfoBatchSampler(IndexDataset(0), seed=0)


def test_sampler_survives_deepcopy_and_pickle():
    sampler = _sampler(10)
    iterator = iter(sampler)
    next(iterator)
    for clone in (copy.deepcopy(sampler), pickle.loads(pickle.dumps(sampler))):
        assert clone.num_samples == 10
        assert torch.equal(clone.stream.scores, sampler.stream.scores, ) or torch.allclose(
            clone.stream.scores, sampler.stream.scores, equal_nan=True)


@pytest.mark.parametrize('lag', [0, 1, 3])
@pytest.mark.parametrize('cut_iter', [0, 2, 5, 9, 15, 17, 18, 22])
def test_state_roundtrip_continues_stream(cut_iter, lag):
    """Restoring at any iteration continues (index, weight) exactly.

    The cut points fall inside virtual epochs, right after one that ends
    mid-batch (iteration 5: positions 10-11 of an 11-sample epoch) and at the
    annealing boundary (iteration 18 = ceil(0.75 * 24)); the DataLoader
    samples `lag` batches ahead of training.
    """
    max_iters, batch_size = 24, 2

    def run(sampler, start_iter, stop_iter):
        iterator = iter(sampler)
        for _ in range(lag * batch_size):  # the DataLoader's read-ahead
            next(iterator)
        out = []
        for iteration in range(start_iter, stop_iter):
            for _ in range(batch_size):
                next(iterator)
            batch = sampler.pop_batch(batch_size)
            out.append((batch.indices, batch.weights))
            # Scores drift with the iteration, as training losses do.
            sampler.stream.update_scores(batch.indices, _score_of(batch.indices) * (1 + iteration))
        return out

    def fresh():
        return _sampler(11, batch_size=batch_size, max_iters=max_iters, delta=0.75)

    full = run(fresh(), 0, max_iters)
    head = fresh()
    run(head, 0, cut_iter)
    state = pickle.loads(pickle.dumps(head.state_dict()))
    resumed = InfiniteInfoBatchSampler(IndexDataset(11), seed=5, delta=0.75)
    resumed.load_state_dict(state)
    resumed.configure(batch_size, current_iter=cut_iter, max_iters=max_iters)
    tail = run(resumed, cut_iter, max_iters)
    for step, ((ref_i, ref_w), (got_i, got_w)) in enumerate(zip(full[cut_iter:], tail)):
        assert torch.equal(ref_i, got_i), cut_iter + step
        assert torch.equal(ref_w, got_w), cut_iter + step
