"""Segmentors that score and reweight each image's loss for InfoBatch."""
import inspect
import logging
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

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

#: Heads whose losses have no per-image form, by class name, with the reason.
UNSUPPORTED_HEADS = {
    'MaskFormerHead': (
        'MaskFormer trains set-prediction losses (classification, mask and Dice terms '
        'of Hungarian-matched queries, built from mmdet losses) normalised by the '
        'number of masks in the whole batch, so no per-image loss_decode exists'),
    'Mask2FormerHead': (
        'Mask2Former trains set-prediction losses (classification, mask and Dice terms '
        'of Hungarian-matched queries, built from mmdet losses) normalised by the '
        'number of masks in the whole batch, so no per-image loss_decode exists'),
    'SideAdapterCLIPHead': (
        'SAN trains set-prediction losses on Hungarian-matched mask queries, so its '
        'loss calls do not take per-image maps'),
    'PIDHead': (
        'PIDNet trains OhemCrossEntropy, which keeps the hardest pixels of the whole '
        'batch and returns only their mean, and BoundaryLoss, which balances boundary '
        'pixels with batch totals; neither has a per-image value'),
    'DDRHead': (
        'DDRNet trains OhemCrossEntropy, which keeps the hardest pixels of the whole '
        'batch and returns only their mean, so it has no per-image value'),
}


class InfoBatchSegmentorMixin:
    """Adds per-image scores and weights to an mmseg segmentor's ``loss``.

    After each training ``loss`` call, :attr:`infobatch_last` contains
    ``{'indices': int64 (B,), 'scores': float32 (B,)}``: the sampler index
    of each image and its score (NaN where no valid pixel was seen).

    An image's score is the sum, over every loss call of the heads selected
    by ``score_source``, of ``loss_weight`` times the image's per-image loss
    (see :mod:`mmib.segmentors.per_image_loss`). The default ``'all'``
    includes the auxiliary heads because InfoBatch prunes on the loss that
    training minimises, and the auxiliary terms are part of that loss.
    ``'decode'`` scores the decode head(s) alone.

    Every mmseg loss module found in the heads (``loss_decode`` and any other
    loss such as EncHead's ``loss_se_decode``) is wrapped at construction,
    and a loss or head without a per-image form raises
    :class:`~mmib.segmentors.UnsupportedLossError` there.
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
            _reject_unsupported_head(head, role)
            for owner, loss_module in _owned_loss_modules(head, role):
                self._loss_hooks.append(build_loss_hooks(
                    loss_module, self._loss_context, role,
                    sampler=getattr(owner, 'sampler', None)))

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


def _is_loss_module(module: nn.Module) -> bool:
    """Return whether ``module`` is an mmseg loss, which all expose ``loss_name``."""
    return hasattr(module, 'loss_name')


def _owned_loss_modules(head: nn.Module, role: str) -> Iterator[Tuple[nn.Module, nn.Module]]:
    """Yield ``(owner, loss)`` for every loss module inside ``head``.

    ``owner`` is the module that has the loss as a child (directly or in a
    ModuleList), and its ``sampler`` applies to that loss. Nested heads count, e.g.
    K-Net's ``kernel_generate_head.loss_decode``.

    Raises:
        UnsupportedLossError: If ``head`` contains no mmseg loss module.
    """
    seen = set()
    for owner in head.modules():
        for child in owner.children():
            members = list(child) if isinstance(child, nn.ModuleList) else [child]
            for loss in members:
                if _is_loss_module(loss) and id(loss) not in seen:
                    seen.add(id(loss))
                    yield owner, loss
    if not seen:
        raise UnsupportedLossError(
            f'{role} head {type(head).__name__} contains no mmseg loss module (a module '
            'with loss_name, as in loss_decode), so its losses cannot be scored per '
            "image; InfoBatch supports heads that compute their loss with mmseg's "
            'loss modules.')


def _reject_unsupported_head(head: nn.Module, role: str) -> None:
    for cls in type(head).__mro__:
        if cls.__name__ in UNSUPPORTED_HEADS:
            raise UnsupportedLossError(_unsupported_head_message(role, type(head).__name__,
                                                                 cls.__name__))


def _reject_unsupported_head_configs(decode_head, auxiliary_head) -> None:
    """Reject known unsupported head types before any head is built.

    Building some of them fails without mmdet, so checking the config first
    gives the InfoBatch error instead of an unrelated import error.
    """
    for role, cfg in (('decode', decode_head), ('auxiliary', auxiliary_head)):
        cfgs = cfg if isinstance(cfg, (list, tuple)) else [cfg]
        for head_cfg in cfgs:
            head_type = head_cfg.get('type') if isinstance(head_cfg, dict) else None
            type_name = head_type if isinstance(head_type, str) else getattr(head_type, '__name__', None)
            if type_name is not None:
                type_name = type_name.split('.')[-1]
            if type_name in UNSUPPORTED_HEADS:
                raise UnsupportedLossError(_unsupported_head_message(role, type_name, type_name))


def _unsupported_head_message(role: str, head_name: str, listed_name: str) -> str:
    return (f'{role} head {head_name}: InfoBatch cannot weight this head per image: '
            f'{UNSUPPORTED_HEADS[listed_name]}. Use a pixel-classification head (e.g. '
            'FCNHead, UPerHead, SegformerHead) with CrossEntropyLoss, or train this model '
            'without InfoBatch.')


def _check_head_configs(stock_init, args, kwargs) -> None:
    """Bind the stock ``__init__`` arguments and reject unsupported head configs."""
    try:
        bound = inspect.signature(stock_init).bind_partial(None, *args, **kwargs).arguments
    except TypeError:
        return  # the stock __init__ raises its own error for invalid arguments
    _reject_unsupported_head_configs(bound.get('decode_head'), bound.get('auxiliary_head'))


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
            per-image losses, each scaled by its ``loss_weight``. That sum is
            the image's share of the training loss InfoBatch is defined on.
            ``'decode'`` uses the decode head alone.
    """

    def __init__(self, *args, score_source: str = 'all', **kwargs) -> None:
        _check_head_configs(EncoderDecoder.__init__, args, kwargs)
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
        _check_head_configs(CascadeEncoderDecoder.__init__, args, kwargs)
        super().__init__(*args, **kwargs)
        self._init_infobatch(score_source)
