"""``InfiniteInfoBatchSampler``: mmengine's ``InfiniteSampler`` with pruning."""
from collections import deque
import math
import numbers
from typing import Deque, Iterator, NamedTuple, Optional, Sized, Tuple

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import MessageHub
from torch.utils.data import Sampler

from mmseg.registry import DATA_SAMPLERS

from ..core.stream import PrunedStream

__all__ = ['InfiniteInfoBatchSampler', 'SampledBatch']


class SampledBatch(NamedTuple):
    """One rank's share of one global batch, as it was sampled.

    Attributes:
        start (int): Global position (in samples) of the global batch.
        indices (torch.Tensor): int64 dataset indices, in DataLoader order.
        weights (torch.Tensor): float32 loss weight of each sample, decided
            when it was sampled.
        virtual_epochs (torch.Tensor): int64 virtual epoch of each sample.
        global_virtual_epochs (torch.Tensor): Sorted int64 virtual epochs of
            the whole global batch, the same on every rank. A rank's own
            share can miss a virtual epoch that starts in another rank's part
            of the batch.
    """

    start: int
    indices: torch.Tensor
    weights: torch.Tensor
    virtual_epochs: torch.Tensor
    global_virtual_epochs: torch.Tensor


@DATA_SAMPLERS.register_module()
class InfiniteInfoBatchSampler(Sampler):
    """Infinite sampler that prunes well-learned samples (InfoBatch).

    Stream contract:

    * All ranks share one infinite global stream of dataset indices, cut into
      *virtual epochs*. A virtual epoch visits every sample once except the
      pruned ones: ``prune_ratio`` of the samples whose latest loss is below
      the mean loss. Samples never scored are never pruned.
    * Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of each
      global batch of ``batch_size * W`` positions, so within a virtual epoch
      no sample goes to two ranks and the ranks together visit exactly the
      kept set, whatever the dataset size.
    * The sampler runs in the main process, and the DataLoader reads it
      ``num_workers * prefetch_factor`` batches ahead of training. The loss
      weight of a sample is therefore decided when its index is yielded and
      travels with it in a FIFO that :class:`~mmib.hooks.InfoBatchHook` pops
      as batches reach the model.
    * A virtual epoch is planned when the first global batch that needs it is
      sampled, from the scores known then. Every rank samples global batch
      ``j`` after the same number of trained iterations, so every rank makes
      the same plan without communication.
    * From iteration ``ceil(delta * max_iters)`` on nothing is pruned and all
      weights are 1.

    ``__len__`` is the dataset size and stays constant. ``set_epoch`` does
    nothing: the stream continues where it is. Each ``iter()`` restarts from
    the last consumed position, discarding what was sampled but not trained;
    resuming from a checkpoint restores scores, plans, position and RNG.

    mmengine builds the DataLoader iterator, and so reads the first batches,
    before :class:`~mmib.hooks.InfoBatchHook` configures the sampler. Until
    then it yields the same stream position by position (nothing is scored
    yet, so nothing can be pruned), which keeps a run with ``prune_ratio=0``
    identical to one with mmengine's ``InfiniteSampler``. Once training has
    started, an unconfigured sampler raises.

    Args:
        dataset (Sized): The dataset; only ``len(dataset)`` is used.
        shuffle (bool): Visit each virtual epoch in random order. Defaults to
            True.
        seed (int, optional): Seed of the sampler's own generator. Defaults to
            None, which takes the run's seed synchronized over ranks, as
            mmengine's ``InfiniteSampler`` does.
        prune_ratio (float): Fraction of the well-learned samples dropped from
            each virtual epoch, in ``[0, 1)``. Defaults to 0.5.
        delta (float): Fraction of ``max_iters`` trained with pruning, in
            ``(0, 1]``. Defaults to 0.875.
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 prune_ratio: float = 0.5,
                 delta: float = 0.875) -> None:
        _check_ratio('prune_ratio', prune_ratio, low_inclusive=True, high_inclusive=False)
        _check_ratio('delta', delta, low_inclusive=False, high_inclusive=True)
        if not isinstance(shuffle, bool):
            raise TypeError(f'shuffle must be a bool, got {shuffle!r}')
        if seed is not None and not isinstance(seed, numbers.Integral):
            raise TypeError(f'seed must be an int or None, got {seed!r}')
        num_samples = len(dataset)
        if num_samples == 0:
            raise ValueError(
                'InfiniteInfoBatchSampler got an empty dataset; check the '
                "dataset's data_root and data_prefix")

        self.rank, self.world_size = get_dist_info()
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.prune_ratio = float(prune_ratio)
        self.delta = float(delta)

        self.stream = PrunedStream(num_samples, self.prune_ratio, self.delta,
                                   self.seed, shuffle)
        self.batch_size: Optional[int] = None
        # (ordinal, index, weight, virtual epoch) of each sampled, untrained sample.
        self._issued: Deque[Tuple[int, int, float, int]] = deque()
        self._iteration_start = 0

    # ------------------------------------------------------------ properties
    @property
    def configured(self) -> bool:
        """Whether :meth:`configure` has been called."""
        return self.batch_size is not None

    @property
    def samples_per_iter(self) -> int:
        """Global batch size in samples (per-rank batch size x world size)."""
        return self.batch_size * self.world_size

    # ---------------------------------------------------------- configuring
    def configure(self, batch_size: int, current_iter: int, max_iters: int) -> None:
        """Bind the sampler to a training run.

        Args:
            batch_size (int): Per-rank batch size of the DataLoader.
            current_iter (int): Iterations already trained (0, or the resumed
                iteration).
            max_iters (int): Total iterations of the run.
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if max_iters < 1:
            raise ValueError(f'max_iters must be >= 1, got {max_iters}')
        self.batch_size = int(batch_size)
        self.stream.set_clock(current_iter, max_iters, self.samples_per_iter)

    # ------------------------------------------------------------- iterating
    def __iter__(self) -> Iterator[int]:
        self._issued.clear()
        self._iteration_start = self.stream.consumed_position
        return self._rank_indices(self._iteration_start)

    def _rank_indices(self, start: int) -> Iterator[int]:
        """Yield positions ``start + rank + k * world_size`` for k = 0, 1, ...

        Once configured, the whole global batch is taken from the stream when
        its first local index is needed, so that any virtual epoch it needs
        is planned at the same moment on every rank. Before that (while
        mmengine builds the DataLoader iterator, with no score known yet)
        positions are taken one by one.
        """
        ordinal = 0
        while True:
            if self.configured and ordinal % self.batch_size == 0:
                batch_start = start + ordinal * self.world_size
                indices, weights, epochs = self.stream.take(
                    batch_start, batch_start + self.samples_per_iter)
                share = slice(self.rank, None, self.world_size)
                for index, weight, epoch in zip(indices[share].tolist(), weights[share].tolist(),
                                                epochs[share].tolist()):
                    self._issued.append((ordinal, index, weight, epoch))
                    yield index
                    ordinal += 1
                continue
            if not self.configured and _training_started():
                raise RuntimeError(
                    'InfiniteInfoBatchSampler is used without InfoBatchHook, so '
                    'no sample is ever scored or pruned. Add '
                    "custom_hooks = [dict(type='InfoBatchHook')] to the config.")
            position = start + self.rank + ordinal * self.world_size
            indices, weights, epochs = self.stream.take(position, position + 1)
            self._issued.append((ordinal, int(indices[0]), float(weights[0]), int(epochs[0])))
            yield int(indices[0])
            ordinal += 1

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Do nothing: virtual epochs are counted by the sampler itself."""

    @property
    def max_issued_position(self) -> Optional[int]:
        """Largest global position sampled but not yet trained, or None."""
        if not self._issued:
            return None
        return self._iteration_start + self.rank + self._issued[-1][0] * self.world_size

    # ----------------------------------------------------------- consumption
    def pop_batch(self, batch_size: int) -> SampledBatch:
        """Return the oldest sampled batch and mark it as trained on.

        Args:
            batch_size (int): Number of samples in the batch the model got;
                must equal the configured batch size.
        """
        if not self.configured:
            raise RuntimeError('pop_batch needs configure() to be called first')
        if batch_size != self.batch_size:
            raise RuntimeError(
                f'the model got a batch of {batch_size} samples but the sampler is '
                f'configured for {self.batch_size}; InfoBatch needs the DataLoader '
                'to batch consecutive sampler indices with a fixed batch_size')
        if len(self._issued) < batch_size:
            raise RuntimeError(
                'InfoBatch sampler FIFO contains fewer samples than the batch that '
                'reached the model: the batch was not sampled by this sampler. The '
                'train DataLoader must use InfiniteInfoBatchSampler and the '
                'default batch sampler.')
        entries = [self._issued.popleft() for _ in range(batch_size)]
        first_ordinal = entries[0][0]
        if first_ordinal % batch_size != 0 or entries[-1][0] != first_ordinal + batch_size - 1:
            raise RuntimeError(
                f'sampled batch is not aligned: ordinals {entries[0][0]}..{entries[-1][0]} '
                f'for batch size {batch_size}')
        start = self._iteration_start + first_ordinal * self.world_size
        stop = start + self.samples_per_iter
        global_epochs = sorted({s.virtual_epoch for s in self.stream.plans
                                if s.start < stop and s.end > start})
        batch = SampledBatch(
            start=start,
            indices=torch.tensor([e[1] for e in entries], dtype=torch.int64),
            weights=torch.tensor([e[2] for e in entries], dtype=torch.float32),
            virtual_epochs=torch.tensor([e[3] for e in entries], dtype=torch.int64),
            global_virtual_epochs=torch.tensor(global_epochs, dtype=torch.int64))
        self.stream.consume(stop)
        return batch

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Return scores, plans, position and RNG as tensors and plain values."""
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the stream; :meth:`configure` must be called afterwards."""
        self.stream.load_state_dict(state)
        self.stream.prune_ratio = self.prune_ratio
        self.stream.delta = self.delta
        self._issued.clear()


def _check_ratio(name: str, value, low_inclusive: bool, high_inclusive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a float, got {value!r} ({type(value).__name__})')
    low_ok = value >= 0 if low_inclusive else value > 0
    high_ok = value <= 1 if high_inclusive else value < 1
    if not (low_ok and high_ok and math.isfinite(value)):
        opening = '[' if low_inclusive else '('
        closing = ']' if high_inclusive else ')'
        interval = f'{opening}0, 1{closing}'
        raise ValueError(f'{name} must be in {interval}, got {value!r}')


def _training_started() -> bool:
    """Return whether mmengine's current run has entered its train loop."""
    hub = MessageHub.get_current_instance()
    return hub.get_info('loop_stage') == 'train'
