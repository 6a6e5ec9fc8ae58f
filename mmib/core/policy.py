"""InfoBatch pruning policy for one virtual epoch, free of mmengine and mmseg.

A *virtual epoch* is one pass over the samples that survive pruning. Planning
it reads the current per-sample scores: the latest training loss of each
sample, ``NaN`` for a sample that has never been scored. It returns the order
in which the kept samples are visited and the loss weight each one carries.

The rule, for ``N`` samples and ``prune_ratio`` ``r``:

1. ``scored`` = samples with a finite score. Only they enter the threshold.
2. ``threshold`` = mean score over ``scored``.
3. ``well_learned`` = scored samples strictly below the threshold.
4. ``num_pruned`` = ``floor(r * num_well_learned)`` of them are dropped,
   chosen uniformly without replacement.
5. Each kept well-learned sample is weighted by
   ``num_well_learned / (num_well_learned - num_pruned)``; all other samples
   carry weight 1.

Step 5 keeps the pass unbiased: a well-learned sample survives with
probability ``k / m`` (``k`` kept of ``m`` well-learned) and then counts
``m / k`` times, so its expected contribution to the summed loss of the pass
is exactly its own loss. Using the realized ratio instead of ``1 / (1 - r)``
removes the bias that rounding ``r * m`` to an integer would leave.
"""
from dataclasses import dataclass
import math

import torch

__all__ = ['VirtualEpochPlan', 'plan_virtual_epoch', 'index_dtype_for']


def index_dtype_for(num_samples: int) -> torch.dtype:
    """Return the narrowest signed integer dtype that can store every index.

    Plans are stored with this dtype to keep checkpoint state small; indices
    are widened to int64 whenever they leave the plan.
    """
    return torch.int32 if num_samples <= torch.iinfo(torch.int32).max else torch.int64


@dataclass
class VirtualEpochPlan:
    """The visiting order and weights of one virtual epoch.

    Attributes:
        order (torch.Tensor): Dataset indices of the kept samples in visiting
            order, shape ``(num_planned,)``, dtype int32 or int64.
        upweighted (torch.Tensor): Bool, shape ``(num_planned,)``: whether the
            sample at that position is a kept well-learned sample.
        well_learned_weight (float): Loss weight of the upweighted positions.
            1.0 when nothing was pruned.
        threshold (float): Mean score used as threshold, NaN if no sample had
            a score.
        num_samples (int): Dataset size the plan was made for.
        num_scored (int): Samples with a finite score when planning.
        num_well_learned (int): Scored samples strictly below the threshold.
        num_pruned (int): Well-learned samples left out of this virtual epoch.
    """

    order: torch.Tensor
    upweighted: torch.Tensor
    well_learned_weight: float
    threshold: float
    num_samples: int
    num_scored: int
    num_well_learned: int
    num_pruned: int

    @property
    def num_planned(self) -> int:
        """Number of samples visited in this virtual epoch."""
        return int(self.order.numel())

    def weights(self, start: int, stop: int) -> torch.Tensor:
        """Return float32 loss weights for positions ``[start, stop)``."""
        flags = self.upweighted[start:stop]
        weights = torch.ones(flags.shape, dtype=torch.float32)
        weights[flags] = self.well_learned_weight
        return weights

    def truncated(self, num_planned: int) -> 'VirtualEpochPlan':
        """Return a copy that visits only the first ``num_planned`` positions."""
        return VirtualEpochPlan(
            order=self.order[:num_planned].clone(),
            upweighted=self.upweighted[:num_planned].clone(),
            well_learned_weight=self.well_learned_weight,
            threshold=self.threshold,
            num_samples=self.num_samples,
            num_scored=self.num_scored,
            num_well_learned=self.num_well_learned,
            num_pruned=self.num_pruned)

    def state_dict(self) -> dict:
        """Return the plan as tensors and plain Python values."""
        return dict(
            order=self.order,
            upweighted=self.upweighted,
            well_learned_weight=self.well_learned_weight,
            threshold=self.threshold,
            num_samples=self.num_samples,
            num_scored=self.num_scored,
            num_well_learned=self.num_well_learned,
            num_pruned=self.num_pruned)

    @classmethod
    def from_state_dict(cls, state: dict) -> 'VirtualEpochPlan':
        """Rebuild a plan saved by :meth:`state_dict`."""
        return cls(**state)


def plan_virtual_epoch(scores: torch.Tensor, prune_ratio: float,
                       generator: torch.Generator,
                       shuffle: bool = True) -> VirtualEpochPlan:
    """Plan one virtual epoch from per-sample scores.

    Args:
        scores (torch.Tensor): float32, shape ``(num_samples,)``; NaN marks a
            sample without a score yet. Not modified.
        prune_ratio (float): Fraction of the well-learned samples to drop, in
            ``[0, 1)``. 0 plans a full pass with all weights 1.
        generator (torch.Generator): CPU generator; the only source of
            randomness. It advances by one ``randperm(num_samples)`` when
            ``shuffle`` is true, and by one ``randperm(num_well_learned)``
            when ``shuffle`` is false and something is pruned.
        shuffle (bool): Visit kept samples in random order (true) or in index
            order (false). Defaults to True.

    Returns:
        VirtualEpochPlan: The plan. With ``prune_ratio == 0`` and
        ``shuffle=True`` its order is exactly ``torch.randperm(num_samples,
        generator=generator)``, the order mmengine's ``InfiniteSampler`` uses.
    """
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f'prune_ratio must be in [0, 1), got {prune_ratio!r}')
    num_samples = int(scores.numel())
    index_dtype = index_dtype_for(num_samples)

    # Steps 1-3: threshold over scored samples only.
    scored = torch.isfinite(scores)
    num_scored = int(torch.count_nonzero(scored))
    if num_scored == num_samples:
        threshold = float(scores.double().mean())
        well_learned = scores < threshold
    elif num_scored > 0:
        threshold = float(scores[scored].double().mean())
        well_learned = scored & (scores < threshold)
    else:
        threshold = math.nan
        well_learned = torch.zeros(num_samples, dtype=torch.bool)
    num_well_learned = int(torch.count_nonzero(well_learned))

    # Step 4: how many to drop.
    num_pruned = math.floor(prune_ratio * num_well_learned)
    num_kept_well = num_well_learned - num_pruned
    weight = num_well_learned / num_kept_well if num_pruned > 0 else 1.0

    # Step 4 continued: which ones, and step 5: which positions carry the
    # weight.
    if shuffle:
        order, upweighted = _shuffled_plan(well_learned, num_pruned, generator, index_dtype)
    else:
        order, upweighted = _ordered_plan(well_learned, num_pruned, generator, index_dtype)

    return VirtualEpochPlan(
        order=order,
        upweighted=upweighted,
        well_learned_weight=float(weight),
        threshold=threshold,
        num_samples=num_samples,
        num_scored=num_scored,
        num_well_learned=num_well_learned,
        num_pruned=num_pruned)


def _shuffled_plan(well_learned, num_pruned, generator, index_dtype):
    """Return (order, upweighted) from one permutation of all samples.

    The first ``num_pruned`` well-learned samples met in a uniform
    permutation are a uniform subset of them, so the same permutation both
    chooses what to drop and orders what is kept. All of them lie before the
    position where the running count of well-learned samples reaches
    ``num_pruned``, so only that head of the permutation is filtered.
    """
    permutation = torch.randperm(well_learned.numel(), generator=generator)
    if num_pruned == 0:
        return permutation.to(index_dtype), torch.zeros(permutation.numel(), dtype=torch.bool)

    well_in_order = well_learned[permutation]
    count_dtype = torch.int32 if well_learned.numel() < 2**31 else torch.int64
    running_count = torch.cumsum(well_in_order, 0, dtype=count_dtype)
    head_length = int(torch.searchsorted(running_count, num_pruned)) + 1
    kept_in_head = ~well_in_order[:head_length]
    order = torch.cat([permutation[:head_length][kept_in_head],
                       permutation[head_length:]]).to(index_dtype)
    upweighted = torch.cat([torch.zeros(int(kept_in_head.sum()), dtype=torch.bool),
                            well_in_order[head_length:]])
    return order, upweighted


def _ordered_plan(well_learned, num_pruned, generator, index_dtype):
    """Return (order, upweighted) in index order, pruning a uniform subset."""
    num_samples = well_learned.numel()
    order = torch.arange(num_samples, dtype=index_dtype)
    if num_pruned == 0:
        return order, torch.zeros(num_samples, dtype=torch.bool)

    well_indices = torch.nonzero(well_learned).squeeze(1)
    chosen = torch.randperm(well_indices.numel(), generator=generator)[:num_pruned]
    keep = torch.ones(num_samples, dtype=torch.bool)
    keep[well_indices[chosen]] = False
    return order[keep], well_learned[keep]
