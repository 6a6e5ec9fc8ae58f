"""Cross-rank exchange of scores and the consistency check.

Every rank keeps its own copy of the InfoBatch stream (scores, plans, RNG).
The copies stay identical because every rank applies the same gathered score
updates in the same order, and :func:`check_consistency` verifies that.
"""
from typing import List, Tuple

import torch
from mmengine import dist

from ..core.stream import PrunedStream

__all__ = ['gather_scores', 'check_consistency', 'stream_checksum', 'CHECKSUM_FIELDS']

_PADDING_INDEX = -1

#: Names of the :func:`stream_checksum` entries, in order.
CHECKSUM_FIELDS = ('score table', 'virtual-epoch plans', 'consumed position',
                   'virtual-epoch counter', 'annealing position')

# Checksums are sums of products taken modulo this prime (2**31 - 1). Every
# factor is reduced below it first, so no int64 product or sum can overflow
# for tables of up to 2**32 entries.
_MODULUS = 2_147_483_647
_COEFFICIENT_SEED = 0x1B1


def gather_scores(indices: torch.Tensor, scores: torch.Tensor,
                  capacity: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All-gather ``(index, score)`` pairs from every rank in one collective.

    Each pair travels as two int64 values: the index and the raw bits of the
    float32 score. So no index is ever rounded through a floating-point
    dtype, whatever dtype the loss had. fp16 and bf16 scores are widened to
    float32 first.

    Args:
        indices (torch.Tensor): 1-D int64 sampler indices of this rank's
            batch, all ``>= 0``.
        scores (torch.Tensor): 1-D scores, same length, any floating dtype.
        capacity (int): Maximum batch length on any rank, the same value on
            every rank. Shorter batches are padded, so every rank sends the
            same shape.

    Returns:
        tuple: int64 indices and float32 scores of all ranks, rank 0 first,
        each rank's pairs in its batch order.
    """
    if indices.dtype != torch.int64:
        raise TypeError(f'indices must be int64, got {indices.dtype}')
    if not scores.is_floating_point():
        raise TypeError(f'scores must be a floating-point tensor, got {scores.dtype}')
    if indices.dim() != 1 or scores.shape != indices.shape:
        raise ValueError(
            f'indices and scores must be 1-D of equal length, got shapes '
            f'{tuple(indices.shape)} and {tuple(scores.shape)}')
    num_local = indices.numel()
    if num_local > capacity:
        raise ValueError(f'batch of {num_local} samples exceeds capacity {capacity}')
    indices = indices.detach().cpu()
    if num_local and int(indices.min()) < 0:
        raise ValueError(f'indices must be >= 0, got {int(indices.min())}')

    packed = torch.full((capacity, 2), _PADDING_INDEX, dtype=torch.int64)
    packed[:num_local, 0] = indices
    score_bits = scores.detach().cpu().float().contiguous().view(torch.int32)
    packed[:num_local, 1] = score_bits.to(torch.int64)

    if dist.get_world_size() > 1:
        packed = torch.cat([part.cpu() for part in dist.all_gather(packed)])

    packed = packed[packed[:, 0] != _PADDING_INDEX]
    gathered_scores = packed[:, 1].to(torch.int32).view(torch.float32)
    return packed[:, 0].clone(), gathered_scores


def _coefficients(length: int) -> torch.Tensor:
    """Return fixed pseudo-random weights in ``[1, _MODULUS)``, one per entry."""
    generator = torch.Generator().manual_seed(_COEFFICIENT_SEED + length)
    return torch.randint(1, _MODULUS, (length,), generator=generator, dtype=torch.int64)


def _fingerprint(values: torch.Tensor) -> torch.Tensor:
    """Return a position-sensitive int64 checksum of an integer tensor."""
    values = torch.remainder(values.reshape(-1).to(torch.int64), _MODULUS)
    products = torch.remainder(values * _coefficients(values.numel()), _MODULUS)
    return torch.remainder(products.sum(), _MODULUS)


def _float_bits(value: float) -> int:
    return int(torch.tensor(value, dtype=torch.float32).view(torch.int32))


def stream_checksum(stream: PrunedStream) -> torch.Tensor:
    """Return int64 fingerprints of a stream, one per :data:`CHECKSUM_FIELDS`.

    Scores are compared bit for bit (NaN marks an unscored sample). Plans
    are compared by placement, order, upweighted flags and weight. A swap of
    two entries changes the fingerprint, because each position has its own
    pseudo-random coefficient.
    """
    scores = _fingerprint(stream.scores.view(torch.int32))
    plan_parts: List[torch.Tensor] = []
    for scheduled in stream.plans:
        plan = scheduled.plan
        header = torch.tensor([
            scheduled.virtual_epoch, scheduled.start, int(scheduled.annealed),
            plan.num_planned, plan.num_pruned, _float_bits(plan.well_learned_weight)])
        plan_parts += [header, plan.order.long(), plan.upweighted.long()]
    plans = _fingerprint(torch.cat(plan_parts)) if plan_parts else torch.zeros((), dtype=torch.int64)
    anneal_position = -1 if stream.anneal_position is None else stream.anneal_position
    return torch.stack([
        scores, plans,
        torch.tensor(stream.consumed_position, dtype=torch.int64),
        torch.tensor(stream.next_virtual_epoch, dtype=torch.int64),
        torch.tensor(anneal_position, dtype=torch.int64)])


def check_consistency(stream: PrunedStream, iteration: int) -> None:
    """Raise on every rank if any two ranks hold different InfoBatch state.

    All ranks must call this at the same iterations, because it is one
    all-gather of five int64 values.

    Args:
        stream (PrunedStream): This rank's stream.
        iteration (int): The runner's 0-based ``runner.iter`` of the
            iteration just trained.

    Raises:
        RuntimeError: Naming the ranks that differ from rank 0, what differs
            and the iteration.
    """
    local = stream_checksum(stream)
    gathered = [part.cpu() for part in dist.all_gather(local)]
    mismatched = [rank for rank, part in enumerate(gathered)
                  if not torch.equal(part, gathered[0])]
    if not mismatched:
        return
    differing = [name for column, name in enumerate(CHECKSUM_FIELDS)
                 if any(part[column] != gathered[0][column] for part in gathered)]
    raise RuntimeError(
        f'InfoBatch state differs across ranks after iteration {iteration + 1} '
        f'(runner.iter {iteration}): ranks {mismatched} disagree with rank 0 on the '
        f'{", ".join(differing)}. Every rank must use the same seed, dataset, '
        'batch_size, num_workers and prefetch_factor, and nothing but InfoBatchHook '
        'may change the sampler state.')
