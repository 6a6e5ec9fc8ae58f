"""``InfiniteInfoBatchSampler``: mmengine's ``InfiniteSampler`` with pruning."""
from collections import deque
import copy
import math
import numbers
from typing import Deque, Iterator, NamedTuple, Optional, Sized

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
    """

    start: int
    indices: torch.Tensor
    weights: torch.Tensor
    virtual_epochs: torch.Tensor


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

    Before :class:`~mmib.hooks.InfoBatchHook` configures it, the sampler yields
    a throwaway unpruned stream so that mmengine can build the DataLoader
    iterator; once training has started, an unconfigured sampler raises.

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
        self._issued: Deque[SampledBatch] = deque()

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
        if not self.configured:
            return self._unconfigured_indices(copy.deepcopy(self.stream))
        self._issued.clear()
        return self._rank_indices()

    def _rank_indices(self) -> Iterator[int]:
        """Yield this rank's share of consecutive global batches."""
        start = self.stream.consumed_position
        while True:
            stop = start + self.samples_per_iter
            indices, weights, epochs = self.stream.take(start, stop)
            share = slice(self.rank, None, self.world_size)
            batch = SampledBatch(start, indices[share], weights[share], epochs[share])
            self._issued.append(batch)
            yield from batch.indices.tolist()
            start = stop

    def _unconfigured_indices(self, stream: PrunedStream) -> Iterator[int]:
        """Yield a throwaway stream until training starts without the hook."""
        start = 0
        while True:
            if _training_started():
                raise RuntimeError(
                    'InfiniteInfoBatchSampler is used without InfoBatchHook, so '
                    'no sample is ever scored or pruned. Add '
                    "custom_hooks = [dict(type='InfoBatchHook')] to the config.")
            stop = start + self.world_size
            indices, _, _ = stream.take(start, stop)
            yield int(indices[self.rank])
            stream.consume(stop)
            start = stop

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Do nothing: virtual epochs are counted by the sampler itself."""

    # ----------------------------------------------------------- consumption
    def pop_batch(self, batch_size: int) -> SampledBatch:
        """Return the oldest sampled batch and mark it as trained on.

        Args:
            batch_size (int): Number of samples in the batch the model got;
                must equal the sampled batch.
        """
        if not self._issued:
            raise RuntimeError(
                'InfoBatch sampler FIFO is empty: a batch reached the model that '
                'this sampler did not sample. The train DataLoader must use '
                'InfiniteInfoBatchSampler and the default batch sampler.')
        batch = self._issued.popleft()
        if batch.indices.numel() != batch_size:
            raise RuntimeError(
                f'the model got a batch of {batch_size} samples but the sampler '
                f'issued {batch.indices.numel()}; InfoBatch needs the '
                'DataLoader to batch consecutive sampler indices (the default '
                'batch sampler with the configured batch_size)')
        self.stream.consume(batch.start + self.samples_per_iter)
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
        interval = ('[' if low_inclusive else '(') + '0, 1' + (']' if high_inclusive else ')')
        raise ValueError(f'{name} must be in {interval}, got {value!r}')


def _training_started() -> bool:
    """Whether mmengine's current run has entered its train loop."""
    hub = MessageHub.get_current_instance()
    return hub.get_info('loop_stage') == 'train'
