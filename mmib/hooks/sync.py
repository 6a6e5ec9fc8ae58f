"""Cross-rank exchange of scores and the consistency check."""
from typing import Tuple

import torch
from mmengine import dist

from ..core.stream import PrunedStream

__all__ = ['gather_scores', 'check_consistency', 'stream_checksum']

_PADDING_INDEX = -1


def gather_scores(indices: torch.Tensor, scores: torch.Tensor,
                  capacity: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All-gather ``(index, score)`` pairs from every rank in one collective.

    Indices stay int64 end to end: each pair travels as two int64 values,
    the index and the raw bits of the float32 score, so no index is ever
    rounded through a floating-point dtype.

    Args:
        indices (torch.Tensor): int64 sampler indices of this rank's batch.
        scores (torch.Tensor): float32 scores, same length.
        capacity (int): Maximum batch length on any rank; shorter batches are
            padded so that every rank sends the same shape.

    Returns:
        tuple: int64 indices and float32 scores of all ranks, rank 0 first.
    """
    if indices.dtype != torch.int64:
        raise TypeError(f'indices must be int64, got {indices.dtype}')
    num_local = indices.numel()
    if num_local > capacity:
        raise ValueError(f'batch of {num_local} samples exceeds capacity {capacity}')
    packed = torch.full((capacity, 2), _PADDING_INDEX, dtype=torch.int64)
    packed[:num_local, 0] = indices.cpu()
    score_bits = scores.detach().float().cpu().contiguous().view(torch.int32)
    packed[:num_local, 1] = score_bits.to(torch.int64)

    if dist.get_world_size() > 1:
        packed = torch.cat([part.cpu() for part in dist.all_gather(packed)])

    real = packed[:, 0] != _PADDING_INDEX
    packed = packed[real]
    gathered_scores = packed[:, 1].to(torch.int32).view(torch.float32)
    return packed[:, 0].clone(), gathered_scores


def stream_checksum(stream: PrunedStream) -> torch.Tensor:
    """Return an int64 fingerprint of scores, plans and position."""
    positions = torch.arange(1, stream.num_samples + 1, dtype=torch.int64)
    score_bits = stream.scores.view(torch.int32).to(torch.int64)
    score_sum = (score_bits * positions).sum()
    plan_sum = torch.zeros((), dtype=torch.int64)
    for scheduled in stream.plans:
        order = scheduled.plan.order.long()
        weights = scheduled.plan.upweighted.long()
        ranks = torch.arange(1, order.numel() + 1, dtype=torch.int64)
        plan_sum += ((order + 1) * ranks).sum() + (weights * ranks).sum() + scheduled.start
    return torch.stack([
        score_sum, plan_sum,
        torch.tensor(stream.consumed_position, dtype=torch.int64),
        torch.tensor(stream.next_virtual_epoch, dtype=torch.int64)])


def check_consistency(stream: PrunedStream, iteration: int) -> None:
    """Raise on every rank if any two ranks hold different InfoBatch state.

    Raises:
        RuntimeError: Naming the ranks that differ from rank 0 and the
            iteration.
    """
    local = stream_checksum(stream)
    gathered = [part.cpu() for part in dist.all_gather(local)]
    mismatched = [rank for rank, part in enumerate(gathered)
                  if not torch.equal(part, gathered[0])]
    if mismatched:
        raise RuntimeError(
            f'InfoBatch state differs across ranks at iteration {iteration}: '
            f'ranks {mismatched} disagree with rank 0 on the score table or the '
            'virtual-epoch plans. Every rank must use the same seed, dataset and '
            'DataLoader settings (num_workers, prefetch_factor, batch_size).')
