"""Segmentors that score and reweight each image's loss for InfoBatch."""
import logging
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.logging import print_log
from torch import nn

from mmseg.models.segmentors import CascadeEncoderDecoder, EncoderDecoder
from mmseg.registry import MODELS

from .per_image_loss import LossContext, PerImageLoss, UnsupportedLossError, build_loss_hooks

__all__ = ['InfoBatchSegmentorMixin', 'InfoBatchEncoderDecoder',
           'InfoBatchCascadeEncoderDecoder', 'INDEX_KEY', 'WEIGHT_KEY']

#: ``SegDataSample`` metainfo keys set by :class:`~mmib.hooks.InfoBatchHook`.
INDEX_KEY = 'infobatch_index'
WEIGHT_KEY = 'infobatch_weight'

SCORE_SOURCES = {
    'all': ('decode', 'auxiliary'),
    'decode': ('decode',),
}


class InfoBatchSegmentorMixin:
    """Adds per-image scores and weights to an mmseg segmentor's ``loss``.

    After each training ``loss`` call, :attr:`infobatch_last` holds
    ``{'indices': int64 (B,), 'scores': float32 (B,)}``: the sampler index
    of each image and its score (NaN where no valid pixel was seen).
    """

    def _init_infobatch(self, score_source: str) -> None:
        if score_source not in SCORE_SOURCES:
            raise ValueError(
                f'score_source must be one of {sorted(SCORE_SOURCES)}, got {score_source!r}')
        self.score_source = score_source
        self.infobatch_last: Optional[Dict[str, torch.Tensor]] = None
        self._loss_context = LossContext()
        self._warned_without_weights = False
        self._loss_hooks: List[PerImageLoss] = []
        for role, head in self._heads_by_role():
            for loss_module in _loss_modules(head, role):
                self._loss_hooks.append(build_loss_hooks(loss_module, self._loss_context, role))

    def _heads_by_role(self) -> Iterable:
        decode = self.decode_head
        decode_heads = decode if isinstance(decode, nn.ModuleList) else [decode]
        for head in decode_heads:
            yield 'decode', head
        auxiliary = getattr(self, 'auxiliary_head', None)
        if auxiliary is not None:
            aux_heads = auxiliary if isinstance(auxiliary, nn.ModuleList) else [auxiliary]
            for head in aux_heads:
                yield 'auxiliary', head

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        weights, indices = _read_infobatch_fields(data_samples)
        if weights is None:
            if not self._warned_without_weights:
                print_log(
                    f'{type(self).__name__} got a training batch without InfoBatch '
                    'weights, so it trains like the stock segmentor. Use '
                    "sampler=dict(type='InfiniteInfoBatchSampler') and "
                    "custom_hooks=[dict(type='InfoBatchHook')] to prune.",
                    logger='current', level=logging.WARNING)
                self._warned_without_weights = True
            self.infobatch_last = None
            return super().loss(inputs, data_samples)

        with self._loss_context.activate(weights.to(inputs.device)):
            losses = super().loss(inputs, data_samples)
            scores = self._loss_context.combined_scores(SCORE_SOURCES[self.score_source])
        if scores is None:
            raise RuntimeError(
                f'no loss call of the {SCORE_SOURCES[self.score_source]} heads was '
                f'seen, so no per-image score exists (score_source={self.score_source!r})')
        self.infobatch_last = dict(indices=indices, scores=scores.detach().float())
        return losses


def _loss_modules(head: nn.Module, role: str) -> List[nn.Module]:
    losses = getattr(head, 'loss_decode', None)
    if losses is None:
        raise UnsupportedLossError(
            f'{role} head {type(head).__name__} has no loss_decode, so its losses '
            'cannot be scored per image; InfoBatch supports heads derived from '
            "mmseg's BaseDecodeHead.")
    return list(losses) if isinstance(losses, nn.ModuleList) else [losses]


def _read_infobatch_fields(data_samples):
    """Return (weights float32 (B,), indices int64 (B,)) or (None, None)."""
    if not data_samples or WEIGHT_KEY not in data_samples[0].metainfo:
        return None, None
    weights = torch.tensor([s.metainfo[WEIGHT_KEY] for s in data_samples], dtype=torch.float32)
    indices = torch.tensor([s.metainfo[INDEX_KEY] for s in data_samples], dtype=torch.int64)
    return weights, indices


@MODELS.register_module()
class InfoBatchEncoderDecoder(InfoBatchSegmentorMixin, EncoderDecoder):
    """``EncoderDecoder`` whose training loss is weighted per image.

    Accepts every ``EncoderDecoder`` argument plus:

    Args:
        score_source (str): Which heads' losses form an image's score:
            ``'all'`` (default) sums the decode and auxiliary heads'
            per-image losses, each scaled by its ``loss_weight``, which is the
            image's share of the training loss InfoBatch is defined on;
            ``'decode'`` uses the decode head alone.
    """

    def __init__(self, *args, score_source: str = 'all', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_infobatch(score_source)


@MODELS.register_module()
class InfoBatchCascadeEncoderDecoder(InfoBatchSegmentorMixin, CascadeEncoderDecoder):
    """``CascadeEncoderDecoder`` (e.g. OCRNet) with per-image loss weights.

    Args:
        score_source (str): As for :class:`InfoBatchEncoderDecoder`; every
            stage of the cascade counts as a decode head.
    """

    def __init__(self, *args, score_source: str = 'all', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_infobatch(score_source)
