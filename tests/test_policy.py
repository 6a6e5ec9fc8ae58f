"""Tests of the framework-free pruning policy and stream."""
import math

import pytest
import torch

from mmib.core import PrunedStream, anneal_start_iter, plan_virtual_epoch


def _generator(seed=0):
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _scores(values):
    return torch.tensor(values, dtype=torch.float32)


def test_threshold_is_mean_of_scored_only():
    scores = _scores([1.0, 2.0, 3.0, 6.0, math.nan, math.nan])
    plan = plan_virtual_epoch(scores, 0.5, _generator())
    assert plan.threshold == pytest.approx(3.0)
    assert plan.num_scored == 4
    assert plan.num_well_learned == 2  # 1.0 and 2.0; 3.0 is not strictly below


def test_exact_counts_and_realized_weight():
    scores = torch.arange(100, dtype=torch.float32)  # mean 49.5 -> 50 below
    plan = plan_virtual_epoch(scores, 0.3, _generator())
    assert plan.num_well_learned == 50
    assert plan.num_pruned == 15
    assert plan.num_planned == 85
    assert plan.well_learned_weight == pytest.approx(50 / 35)
    kept = set(plan.order.tolist())
    assert len(kept) == 85
    assert set(range(50, 100)) <= kept
    upweighted = set(plan.order[plan.upweighted].tolist())
    assert upweighted == kept & set(range(50))


def test_weights_make_pass_unbiased():
    scores = torch.rand(40, generator=_generator(1))
    generator = _generator(2)
    trials = 4000
    totals = torch.zeros(40, dtype=torch.float64)
    for _ in range(trials):
        plan = plan_virtual_epoch(scores, 0.5, generator)
        weights = plan.weights(0, plan.num_planned).double()
        totals.index_add_(0, plan.order.long(), weights)
    expected_weight_per_sample = totals / trials
    assert torch.allclose(expected_weight_per_sample, torch.ones(40, dtype=torch.float64),
                          atol=0.06)


def test_unscored_samples_never_pruned():
    scores = torch.full((50,), math.nan)
    scores[:10] = torch.arange(10, dtype=torch.float32)
    plan = plan_virtual_epoch(scores, 0.9, _generator())
    assert set(range(10, 50)) <= set(plan.order.tolist())
    assert plan.num_pruned == math.floor(0.9 * 5)


def test_no_scores_plans_full_pass():
    plan = plan_virtual_epoch(torch.full((7,), math.nan), 0.5, _generator())
    assert sorted(plan.order.tolist()) == list(range(7))
    assert math.isnan(plan.threshold)
    assert not plan.upweighted.any()


def test_zero_ratio_matches_randperm():
    generator = _generator(5)
    reference = torch.randperm(30, generator=_generator(5))
    plan = plan_virtual_epoch(torch.rand(30), 0.0, generator)
    assert torch.equal(plan.order.long(), reference)
    assert plan.well_learned_weight == 1.0


def test_no_shuffle_keeps_index_order():
    scores = torch.arange(20, dtype=torch.float32)
    plan = plan_virtual_epoch(scores, 0.5, _generator(), shuffle=False)
    order = plan.order.tolist()
    assert order == sorted(order)
    assert plan.num_pruned == 5


def test_same_seed_same_plan():
    scores = torch.rand(1000, generator=_generator(3))
    first = plan_virtual_epoch(scores, 0.5, _generator(9))
    second = plan_virtual_epoch(scores, 0.5, _generator(9))
    other = plan_virtual_epoch(scores, 0.5, _generator(10))
    assert torch.equal(first.order, second.order)
    assert not torch.equal(first.order, other.order)


def test_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    stream = PrunedStream(100, 0.5, 0.875, seed=1)
    stream.update_scores(torch.arange(100), torch.rand(100, generator=_generator()))
    stream.take(0, 350)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize('ratio', [-0.1, 1.0, 1.5, math.nan])
def test_invalid_ratio_rejected(ratio):
    with pytest.raises(ValueError, match='prune_ratio'):
        plan_virtual_epoch(torch.rand(5), ratio, _generator())


@pytest.mark.parametrize('delta,max_iters,expected', [
    (0.875, 200, 175), (0.7, 10, 7), (0.3, 7, 3), (1.0, 50, 50), (0.01, 10, 1)])
def test_anneal_start_iter(delta, max_iters, expected):
    assert anneal_start_iter(delta, max_iters) == expected


def test_stream_anneal_boundary_non_integer():
    # 10 samples, 4 per iteration, delta * max_iters = 0.55 * 11 = 6.05 -> 7.
    stream = PrunedStream(10, 0.5, 0.55, seed=0)
    stream.set_clock(0, 11, 4)
    assert stream.anneal_position == 28
    stream.update_scores(torch.arange(10), torch.arange(10, dtype=torch.float32))
    indices, weights, epochs = stream.take(0, 44)
    boundary = 28
    assert torch.all(weights[boundary:] == 1.0)
    pruned_before = [s for s in stream.plans if not s.annealed]
    annealed = [s for s in stream.plans if s.annealed]
    assert pruned_before and annealed
    assert annealed[0].start == boundary
    assert all(s.end <= boundary for s in pruned_before)
    # Everything visited after the boundary comes from full passes.
    first_full = indices[boundary:boundary + 10]
    assert sorted(first_full.tolist()) == list(range(10))


def test_stream_weights_bound_at_take():
    stream = PrunedStream(8, 0.5, 1.0, seed=0)
    stream.set_clock(0, 1000, 2)
    stream.update_scores(torch.arange(8), torch.arange(8, dtype=torch.float32))
    _, first_weights, _ = stream.take(0, 2)
    stream.update_scores(torch.arange(8), torch.zeros(8))
    _, again, _ = stream.take(0, 2)
    assert torch.equal(first_weights, again)


def test_nonfinite_scores_skipped():
    stream = PrunedStream(4, 0.5, 1.0, seed=0)
    stream.update_scores(torch.arange(4), _scores([1.0, 2.0, 3.0, 4.0]))
    skipped = stream.update_scores(torch.arange(4), _scores([math.nan, math.inf, -math.inf, 5.0]))
    assert skipped == 3
    assert stream.scores.tolist() == [1.0, 2.0, 3.0, 5.0]


def test_repeated_index_last_wins():
    stream = PrunedStream(4, 0.5, 1.0, seed=0)
    stream.update_scores(torch.tensor([2, 1, 2, 2]), _scores([1.0, 7.0, 2.0, 3.0]))
    assert stream.scores[2].item() == 3.0
    assert stream.scores[1].item() == 7.0


def test_float_indices_rejected():
    stream = PrunedStream(4, 0.5, 1.0, seed=0)
    with pytest.raises(TypeError, match='int64'):
        stream.update_scores(torch.tensor([1.0]), _scores([1.0]))


@pytest.mark.parametrize('cut', [0, 5, 10, 13, 27, 28, 29, 40])
def test_stream_state_roundtrip(cut):
    def run(stream, start, stop):
        out = []
        for position in range(start, stop, 4):
            indices, weights, _ = stream.take(position, position + 4)
            stream.consume(position + 4)
            out.append((indices, weights))
            stream.update_scores(indices, (indices.float() * 7) % 5)
        return out

    reference = PrunedStream(10, 0.5, 0.6, seed=3)
    reference.set_clock(0, 12, 4)
    full = run(reference, 0, 48)

    head = PrunedStream(10, 0.5, 0.6, seed=3)
    head.set_clock(0, 12, 4)
    cut_position = (cut // 4) * 4
    run(head, 0, cut_position)
    state = head.state_dict()
    resumed = PrunedStream(10, 0.5, 0.6, seed=99)
    resumed.load_state_dict(state)
    resumed.set_clock(cut_position // 4, 12, 4)
    tail = run(resumed, cut_position, 48)
    for (ref_i, ref_w), (got_i, got_w) in zip(full[cut_position // 4:], tail):
        assert torch.equal(ref_i, got_i)
        assert torch.equal(ref_w, got_w)


def test_state_for_other_dataset_size_rejected():
    state = PrunedStream(10, 0.5, 1.0, seed=0).state_dict()
    with pytest.raises(ValueError, match='11'):
        PrunedStream(11, 0.5, 1.0, seed=0).load_state_dict(state)


def _reference_shuffled_order(scores, prune_ratio, generator):
    """Straightforward version: drop the first num_pruned well-learned in a permutation."""
    scored = torch.isfinite(scores)
    threshold = scores[scored].double().mean() if scored.any() else math.nan
    well = scored & (scores < threshold) if scored.any() else torch.zeros_like(scored)
    num_pruned = math.floor(prune_ratio * int(well.sum()))
    permutation = torch.randperm(scores.numel(), generator=generator)
    kept, upweighted, dropped = [], [], 0
    for index in permutation.tolist():
        if well[index] and dropped < num_pruned:
            dropped += 1
            continue
        kept.append(index)
        upweighted.append(bool(well[index]) and num_pruned > 0)
    return kept, upweighted


@pytest.mark.parametrize('seed', range(12))
@pytest.mark.parametrize('prune_ratio', [0.0, 0.3, 0.5, 0.9])
def test_shuffled_plan_matches_reference(seed, prune_ratio):
    scores = torch.rand(200, generator=_generator(seed))
    scores[torch.rand(200, generator=_generator(seed + 100)) < 0.3] = math.nan
    plan = plan_virtual_epoch(scores, prune_ratio, _generator(seed))
    kept, upweighted = _reference_shuffled_order(scores, prune_ratio, _generator(seed))
    assert plan.order.tolist() == kept
    assert plan.upweighted.tolist() == upweighted
