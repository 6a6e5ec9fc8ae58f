"""The global InfoBatch sample stream, free of mmengine and mmseg.

The stream is an infinite sequence of ``(dataset index, loss weight)``
entries addressed by a *global position* in samples, counted from the start
of training over all ranks together. It is cut into virtual epochs: each one
is a :class:`~mmib.core.policy.VirtualEpochPlan` made when the stream first
needs a position past the end of the previous plan, from the scores known at
that moment.

Training consumes the stream in global batches of ``samples_per_iter``
positions (per-rank batch size times world size), one per iteration. From
``anneal_iter = ceil(delta * max_iters)`` on, the stream stops pruning: the
virtual epoch running at that iteration is cut at the first position of
``anneal_iter`` and every later virtual epoch is a full pass with weight 1.
With ``prune_ratio == 0`` nothing is cut, so the stream is exactly the one
mmengine's ``InfiniteSampler`` produces for the same seed.
"""
from fractions import Fraction
import math
from typing import Dict, List, Optional, Tuple

import torch

from .policy import VirtualEpochPlan, plan_virtual_epoch

__all__ = ['PrunedStream', 'anneal_start_iter']

STATE_VERSION = 1


def anneal_start_iter(delta: float, max_iters: int) -> int:
    """Return the first iteration (0-based) trained without pruning.

    Computed as ``ceil(delta * max_iters)`` on the decimal value of ``delta``,
    so ``delta=0.7, max_iters=10`` gives 7 (plain float arithmetic gives
    ``7.000000000000001`` and would round up to 8).
    """
    return math.ceil(Fraction(repr(float(delta))) * max_iters)


class _ScheduledPlan:
    """A plan placed on the stream: it covers ``[start, start + num_planned)``.

    ``offset`` counts the positions of the virtual epoch that came before
    ``start`` and were dropped from the plan because they were trained before
    a checkpoint was saved.
    """

    def __init__(self, virtual_epoch: int, start: int, plan: VirtualEpochPlan,
                 annealed: bool, offset: int = 0):
        self.virtual_epoch = virtual_epoch
        self.start = start
        self.plan = plan
        self.annealed = annealed
        self.offset = offset

    @property
    def end(self) -> int:
        return self.start + self.plan.num_planned

    def state_dict(self, from_position: int) -> dict:
        """Return the plan's state without the positions before ``from_position``."""
        skipped = min(max(from_position - self.start, 0), self.plan.num_planned)
        plan = self.plan
        if skipped:
            plan = VirtualEpochPlan(**dict(plan.state_dict(),
                                           order=plan.order[skipped:].clone(),
                                           upweighted=plan.upweighted[skipped:].clone()))
        return dict(virtual_epoch=self.virtual_epoch, start=self.start + skipped,
                    annealed=self.annealed, offset=self.offset + skipped,
                    plan=plan.state_dict())

    @classmethod
    def from_state_dict(cls, state: dict) -> '_ScheduledPlan':
        return cls(state['virtual_epoch'], state['start'],
                   VirtualEpochPlan.from_state_dict(state['plan']),
                   state['annealed'], state.get('offset', 0))


class PrunedStream:
    """Scores, RNG and the virtual-epoch plans of one InfoBatch run.

    Every rank keeps an identical copy. The same seed, the same score updates
    in the same order, and planning triggered at the same global batch give
    the same plans without any communication.

    Args:
        num_samples (int): Dataset size (the sampler's index range).
        prune_ratio (float): Fraction of well-learned samples dropped from
            each virtual epoch, in ``[0, 1)``.
        delta (float): Fraction of ``max_iters`` trained with pruning, in
            ``(0, 1]``; the remaining iterations anneal.
        seed (int): Seed of the stream's own ``torch.Generator``.
        shuffle (bool): Visit each virtual epoch in random order.
    """

    def __init__(self, num_samples: int, prune_ratio: float, delta: float,
                 seed: int, shuffle: bool = True):
        self.num_samples = num_samples
        self.prune_ratio = prune_ratio
        self.delta = delta
        self.seed = seed
        self.shuffle = shuffle

        self.scores = torch.full((num_samples,), math.nan, dtype=torch.float32)
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.plans: List[_ScheduledPlan] = []
        self.next_virtual_epoch = 0
        self.consumed_position = 0
        self.anneal_position: Optional[int] = None
        self.cumulative_pruned = 0
        # Virtual epoch -> plain-value summary, kept until a hook reports it.
        self.summaries: Dict[int, dict] = {}

    # ----------------------------------------------------------------- clock
    def set_clock(self, current_iter: int, max_iters: int,
                  samples_per_iter: int) -> None:
        """Place the annealing boundary on the stream.

        Args:
            current_iter (int): Iterations already trained; the next batch
                starts at :attr:`consumed_position`.
            max_iters (int): Total iterations of the run.
            samples_per_iter (int): Global batch size in samples.
        """
        anneal_iter = anneal_start_iter(self.delta, max_iters)
        iters_left = max(anneal_iter - current_iter, 0)
        self.anneal_position = self.consumed_position + iters_left * samples_per_iter
        if self.prune_ratio > 0:
            self._apply_anneal_cut()

    def _apply_anneal_cut(self) -> None:
        """Cut or drop pruned plans that reach past the annealing boundary."""
        boundary = self.anneal_position
        kept: List[_ScheduledPlan] = []
        for scheduled in self.plans:
            if scheduled.annealed or scheduled.end <= boundary:
                kept.append(scheduled)
            elif scheduled.start < boundary:
                scheduled.plan = scheduled.plan.truncated(boundary - scheduled.start)
                if scheduled.virtual_epoch in self.summaries:
                    self.summaries[scheduled.virtual_epoch]['num_planned'] = \
                        scheduled.plan.num_planned
                    self.summaries[scheduled.virtual_epoch].setdefault(
                        'full_planned', scheduled.offset + scheduled.end - scheduled.start)
                kept.append(scheduled)
            # A pruned plan that starts at or after the boundary was made
            # under another clock; it is dropped and planned again.
        dropped = [s for s in self.plans if s not in kept]
        if dropped:
            self.next_virtual_epoch = dropped[0].virtual_epoch
            self.cumulative_pruned -= sum(s.plan.num_pruned for s in dropped)
            for scheduled in dropped:
                self.summaries.pop(scheduled.virtual_epoch, None)
        self.plans = kept

    # -------------------------------------------------------------- planning
    def _stream_end(self) -> int:
        return self.plans[-1].end if self.plans else self.consumed_position

    def _plan_next(self) -> _ScheduledPlan:
        start = self._stream_end()
        annealed = self.anneal_position is not None and start >= self.anneal_position
        prune_ratio = 0.0 if annealed else self.prune_ratio
        plan = plan_virtual_epoch(self.scores, prune_ratio, self.generator,
                                  shuffle=self.shuffle)
        full_planned = plan.num_planned
        if (not annealed and self.prune_ratio > 0 and self.anneal_position is not None
                and start + plan.num_planned > self.anneal_position):
            plan = plan.truncated(self.anneal_position - start)
        scheduled = _ScheduledPlan(self.next_virtual_epoch, start, plan, annealed)
        self.next_virtual_epoch += 1
        self.cumulative_pruned += plan.num_pruned
        self.plans.append(scheduled)
        self.summaries[scheduled.virtual_epoch] = dict(
            virtual_epoch=scheduled.virtual_epoch,
            start=start,
            annealed=annealed,
            num_samples=plan.num_samples,
            num_planned=plan.num_planned,
            num_scored=plan.num_scored,
            num_well_learned=plan.num_well_learned,
            num_pruned=plan.num_pruned,
            threshold=plan.threshold,
            well_learned_weight=plan.well_learned_weight,
            kept_fraction=(plan.num_samples - plan.num_pruned) / plan.num_samples,
            cumulative_pruned=self.cumulative_pruned,
            full_planned=full_planned)
        return scheduled

    def take(self, start: int, stop: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the entries at global positions ``[start, stop)``.

        Plans missing for that range are made now, from the current scores.
        ``start`` must not lie before :attr:`consumed_position`.

        Returns:
            tuple: ``indices`` (int64), ``weights`` (float32) and
            ``virtual_epochs`` (int64), each of shape ``(stop - start,)``.
        """
        if start < self.consumed_position:
            raise ValueError(
                f'position {start} was already consumed (consumed position '
                f'{self.consumed_position})')
        while self._stream_end() < stop:
            self._plan_next()

        indices, weights, epochs = [], [], []
        for scheduled in self.plans:
            lo = max(start, scheduled.start) - scheduled.start
            hi = min(stop, scheduled.end) - scheduled.start
            if lo >= hi:
                continue
            indices.append(scheduled.plan.order[lo:hi].long())
            weights.append(scheduled.plan.weights(lo, hi))
            epochs.append(torch.full((hi - lo,), scheduled.virtual_epoch, dtype=torch.int64))
        return torch.cat(indices), torch.cat(weights), torch.cat(epochs)

    # ----------------------------------------------------------- consumption
    def consume(self, position: int) -> None:
        """Mark every position before ``position`` as trained on."""
        self.consumed_position = max(self.consumed_position, position)
        self.plans = [s for s in self.plans if s.end > self.consumed_position]

    def update_scores(self, indices: torch.Tensor, values: torch.Tensor) -> int:
        """Store new scores; non-finite values are skipped.

        Args:
            indices (torch.Tensor): int64 dataset indices.
            values (torch.Tensor): Scores, same length. When an index occurs
                more than once, the last occurrence wins.

        Returns:
            int: Number of non-finite values skipped.
        """
        if indices.dtype != torch.int64:
            raise TypeError(f'indices must be int64, got {indices.dtype}')
        values = values.detach().to(device='cpu', dtype=torch.float32)
        indices = indices.detach().cpu()
        finite = torch.isfinite(values)
        num_skipped = int((~finite).sum())
        indices, values = indices[finite], values[finite]
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise IndexError(
                f'score index out of range [0, {self.num_samples}): '
                f'min {int(indices.min())}, max {int(indices.max())}')
        # Indexed assignment keeps an unspecified value for a repeated index,
        # so only each index's last occurrence is written.
        last = _last_occurrence_positions(indices)
        self.scores[indices[last]] = values[last]
        return num_skipped

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Return the full state as tensors and plain Python values.

        Positions already trained are left out of the plans, so a checkpoint
        stores at most the untrained rest of each planned virtual epoch.
        """
        return dict(
            version=STATE_VERSION,
            num_samples=self.num_samples,
            prune_ratio=self.prune_ratio,
            delta=self.delta,
            seed=self.seed,
            shuffle=self.shuffle,
            scores=self.scores.clone(),
            generator_state=self.generator.get_state(),
            plans=[s.state_dict(self.consumed_position) for s in self.plans],
            next_virtual_epoch=self.next_virtual_epoch,
            consumed_position=self.consumed_position,
            cumulative_pruned=self.cumulative_pruned,
            summaries={k: dict(v) for k, v in self.summaries.items()})

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by :meth:`state_dict`.

        Raises:
            ValueError: If the state belongs to a dataset of another size or
                to an unknown state version.
        """
        if state.get('version') != STATE_VERSION:
            raise ValueError(
                f'unsupported InfoBatch state version {state.get("version")!r}; '
                f'this mmib reads version {STATE_VERSION}')
        if state['num_samples'] != self.num_samples:
            raise ValueError(
                f'InfoBatch state is for a dataset of {state["num_samples"]} '
                f'samples but the training dataset has {self.num_samples}; '
                'resume with the dataset the checkpoint was trained on, or use '
                'load_from (which starts fresh InfoBatch state) instead of resume')
        self.scores = state['scores'].clone().to(torch.float32)
        self.generator.set_state(state['generator_state'])
        self.plans = [_ScheduledPlan.from_state_dict(s) for s in state['plans']]
        self.next_virtual_epoch = state['next_virtual_epoch']
        self.consumed_position = state['consumed_position']
        self.cumulative_pruned = state['cumulative_pruned']
        self.summaries = {int(k): dict(v) for k, v in state['summaries'].items()}
        self.anneal_position = None


def _last_occurrence_positions(indices: torch.Tensor) -> torch.Tensor:
    """Return the position of the last occurrence of each distinct index."""
    count = indices.numel()
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)
    _, inverse = torch.unique(indices, return_inverse=True)
    last = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.int64)
    last.scatter_reduce_(0, inverse, torch.arange(count), reduce='amax')
    return last
