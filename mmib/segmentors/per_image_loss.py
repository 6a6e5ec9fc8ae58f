"""Per-image scores and per-image weights for mmseg loss modules.

mmseg decode heads call each loss module once or several times per forward as
``loss(seg_logits, seg_label, weight=seg_weight, ignore_index=...)`` and
expect a scalar back. :func:`build_loss_hooks` wraps such a module's
``forward`` (an instance attribute; the module, its parameters and its
``state_dict`` keys are unchanged). While the owning segmentor's
:class:`LossContext` is active, the wrapped call

* evaluates the loss once, unreduced, and reduces it exactly as the stock
  module would, except that image ``i``'s terms are multiplied by its weight
  ``w_i``. The result is ``sum_i w_i * c_i``, where ``c_i`` is image ``i``'s
  share of the stock loss (same denominator, same ``loss_weight``). With
  every ``w_i == 1`` the same operations run on the same tensors as in the
  stock module, so the value and its gradient are bit-identical;
* records a per-image score: the mean loss over image ``i``'s valid pixels
  (label not ignored and pixel weight above zero), times ``loss_weight``.
  An image without valid pixels gets NaN, which the sampler never stores.

Calls with ``reduction_override`` (OHEM's pixel sampler makes one under
``torch.no_grad``) and calls outside an active context run the stock forward
untouched.
"""
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
from torch import nn

__all__ = ['LossContext', 'PerImageLoss', 'PixelwiseLoss', 'build_loss_hooks',
           'UnsupportedLossError']

_EPS = torch.finfo(torch.float32).eps


class UnsupportedLossError(ValueError):
    """A loss module cannot give per-image values."""


class LossContext:
    """Per-forward state shared by the wrapped losses of one segmentor.

    Attributes:
        weights (torch.Tensor | None): float32 per-image loss weights of the
            current batch, shape ``(B,)``; None outside ``loss``.
        scores (dict): Head role (``'decode'`` or ``'auxiliary'``) to a list
            of per-image score tensors, one per loss call.
    """

    def __init__(self) -> None:
        self.weights: Optional[torch.Tensor] = None
        self.all_ones = True
        self.scores: Dict[str, List[torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        return self.weights is not None

    @contextmanager
    def activate(self, weights: torch.Tensor):
        """Apply ``weights`` to every wrapped loss call inside the block."""
        self.weights = weights
        self.all_ones = bool(torch.all(weights == 1))
        self.scores = {}
        try:
            yield self
        finally:
            self.weights = None

    def record(self, role: str, scores: torch.Tensor) -> None:
        self.scores.setdefault(role, []).append(scores)

    def combined_scores(self, roles) -> Optional[torch.Tensor]:
        """Return the per-image sum of the scores recorded for ``roles``.

        NaN marks an image that had no valid pixel in some recorded call.
        None when no call of ``roles`` was recorded.
        """
        recorded = [s for role in roles for s in self.scores.get(role, [])]
        if not recorded:
            return None
        return torch.stack(recorded).sum(0)


class PerImageLoss:
    """Replacement ``forward`` of one loss module; subclasses own the reduction.

    Args:
        module (nn.Module): The loss module; its ``forward`` attribute is set
            to this object.
        context (LossContext): Shared state of the owning segmentor.
        role (str): ``'decode'`` or ``'auxiliary'``.
    """

    def __init__(self, module: nn.Module, context: LossContext, role: str) -> None:
        self.module = module
        self.context = context
        self.role = role
        module.forward = self

    def remove(self) -> None:
        """Restore the module's own ``forward``."""
        del self.module.forward

    def __call__(self, *args, **kwargs):
        stock_forward = type(self.module).forward
        if not self.context.active or kwargs.get('reduction_override') is not None:
            return stock_forward(self.module, *args, **kwargs)
        args, kwargs = _weight_as_keyword(args, kwargs)
        loss_weight = self.module.loss_weight
        self.module.loss_weight = 1.0
        try:
            unreduced = stock_forward(self.module, *args, **dict(kwargs, reduction_override='none'))
        finally:
            self.module.loss_weight = loss_weight
        label = args[1]
        scores = self.per_image_scores(unreduced, label, kwargs)
        self.context.record(self.role, (loss_weight * scores).detach())
        return loss_weight * self.reduce(unreduced, label, kwargs)

    def per_image_scores(self, unreduced, label, kwargs) -> torch.Tensor:
        raise NotImplementedError

    def reduce(self, unreduced, label, kwargs) -> torch.Tensor:
        raise NotImplementedError

    def _image_weights(self, like: torch.Tensor) -> Optional[torch.Tensor]:
        """Per-image weights shaped to broadcast over ``like``, or None if all 1."""
        if self.context.all_ones:
            return None
        weights = self.context.weights.to(device=like.device)
        return weights.view(-1, *([1] * (like.dim() - 1)))


class PixelwiseLoss(PerImageLoss):
    """``CrossEntropyLoss`` (softmax or sigmoid): a reduced per-pixel map.

    The stock reduction is ``sum(map * pixel_weight) / (avg_factor + eps)``
    where mmseg 1.2.2 derives ``avg_factor`` from the label alone (all
    elements, the non-ignored ones with ``avg_non_ignore``, or the summed
    class weights), or a plain mean for the sigmoid variant without
    ``avg_non_ignore``. Only the per-image factor is added here.
    """

    def per_image_scores(self, unreduced, label, kwargs):
        ignore_index = kwargs.get('ignore_index', -100)
        valid = (label != ignore_index) & (label >= 0)
        pixel_weight = kwargs.get('weight')
        if pixel_weight is not None:
            valid = valid & (pixel_weight > 0)
        per_image_sum = unreduced.detach().float().flatten(1).sum(1)
        num_valid = valid.flatten(1).sum(1)
        scores = per_image_sum / num_valid.clamp(min=1)
        return torch.where(num_valid > 0, scores, torch.full_like(scores, float('nan')))

    def reduce(self, unreduced, label, kwargs):
        weights = self._image_weights(unreduced)
        weighted = unreduced if weights is None else unreduced * weights
        reduction = self.module.reduction
        if reduction == 'sum':
            return weighted.sum()
        avg_factor = kwargs.get('avg_factor')
        if avg_factor is None:
            avg_factor = self._stock_avg_factor(unreduced, label, kwargs)
        if avg_factor is None:
            return weighted.mean()
        return weighted.sum() / (avg_factor + _EPS)

    def _stock_avg_factor(self, unreduced, label, kwargs):
        """The denominator mmseg 1.2.2's cross-entropy functions pick for 'mean'."""
        ignore_index = kwargs.get('ignore_index', -100)
        module = self.module
        if module.use_sigmoid:
            if not module.avg_non_ignore:
                return None
            valid = (label >= 0) & (label != ignore_index)
            if unreduced.dim() == label.dim() + 1:
                return valid.sum().item() * unreduced.shape[1]
            return valid.sum().item()
        if module.class_weight is None:
            if module.avg_non_ignore:
                return label.numel() - (label == ignore_index).sum().item()
            return label.numel()
        class_weight = unreduced.new_tensor(module.class_weight)
        label_weights = class_weight[label]
        if module.avg_non_ignore:
            label_weights = torch.where(label == ignore_index,
                                        torch.zeros_like(label_weights), label_weights)
        return label_weights.sum()


def _weight_as_keyword(args, kwargs):
    """Move a positional pixel ``weight`` (third argument) into ``kwargs``."""
    if len(args) > 2:
        kwargs = dict(kwargs, weight=args[2])
        args = args[:2]
    return args, kwargs


def build_loss_hooks(module: nn.Module, context: LossContext, role: str) -> PerImageLoss:
    """Wrap a loss module's ``forward``, or raise if it has no per-image form.

    Raises:
        UnsupportedLossError: If the loss cannot give per-image values.
    """
    name = type(module).__name__
    loss_name = getattr(module, 'loss_name', name)
    if name == 'CrossEntropyLoss':
        if getattr(module, 'use_mask', False):
            raise UnsupportedLossError(
                f'{loss_name}: CrossEntropyLoss(use_mask=True) reduces over mask '
                'proposals, not images; InfoBatch cannot weight it per image. '
                'Use use_mask=False.')
        if module.reduction == 'none':
            raise UnsupportedLossError(
                f"{loss_name}: reduction='none' returns a loss map that the head "
                "does not reduce; use reduction='mean' or 'sum'.")
        return PixelwiseLoss(module, context, role)
    raise UnsupportedLossError(
        f'{loss_name}: InfoBatch has no per-image rule for {name}. '
        'Supported losses: CrossEntropyLoss.')
