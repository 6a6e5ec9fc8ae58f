"""Per-image scores and per-image weights for mmseg loss modules.

mmseg decode heads call each loss module once or several times per forward as
``loss(seg_logits, seg_label, weight=seg_weight, ignore_index=...)`` and
expect a scalar back (or an unreduced tensor that mmengine's ``parse_losses``
averages). :func:`build_loss_hooks` wraps such a module's ``forward`` (an
instance attribute; the module, its parameters and its ``state_dict`` keys are
unchanged). While the owning segmentor's :class:`LossContext` is active, the
wrapped call

* evaluates the loss once per image (``reduction_override='none'`` with
  ``loss_weight`` set to 1.0 for the duration of the call) and reduces it
  exactly as the stock module would, except that image ``i``'s terms are
  multiplied by its weight ``w_i``. The result is ``sum_i w_i * c_i``, where
  ``c_i`` is image ``i``'s share of the stock loss (same denominator, same
  ``loss_weight``). With every ``w_i == 1`` the same operations run on the
  same tensors as in the stock module, so the value and its gradient are
  bit-identical;
* records a per-image score, times ``loss_weight``. Pixel losses
  (cross-entropy, focal) score the image's summed loss over the pixels whose
  label is not ignored, divided by the count of those pixels. Pixel weights
  (from ``OHEMPixelSampler``) scale the summed terms but not the count, so an
  image in which OHEM keeps no pixel scores 0. Image-level losses (Dice,
  Lovasz, Tversky) score the image's own loss value, computed on its
  non-ignored pixels. An image without non-ignored pixels gets NaN, which
  the sampler never stores.

Calls with ``reduction_override`` (OHEM's pixel sampler makes them under
``torch.no_grad``) and calls outside an active context run the stock forward
untouched.

Every statement about stock behaviour here refers to mmsegmentation 1.2.2.
"""
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmseg.models.losses.dice_loss import _expand_onehot_labels_dice, dice_loss
from mmseg.models.losses.tversky_loss import binary_tversky_loss
from mmseg.models.losses.utils import weight_reduce_loss

__all__ = ['LossContext', 'PerImageLoss', 'CrossEntropyPerImage', 'DicePerImage',
           'LovaszPerImage', 'TverskyPerImage', 'FocalPerImage', 'build_loss_hooks',
           'UnsupportedLossError', 'SUPPORTED_LOSSES']

#: Loss types with a per-image rule, for messages and docs.
SUPPORTED_LOSSES = ('CrossEntropyLoss', 'DiceLoss', 'LovaszLoss(per_image=True)',
                    'TverskyLoss', 'FocalLoss (CUDA only)')


class UnsupportedLossError(ValueError):
    """A loss module or head cannot give per-image loss values."""


class LossContext:
    """Per-forward state shared by the wrapped losses of one segmentor.

    Attributes:
        weights (torch.Tensor | None): float32 per-image loss weights of the
            current batch, shape ``(B,)``; None outside ``loss``.
        all_ones (bool): Whether every weight is 1, in which case the wrapped
            losses skip the multiplication to stay bit-identical to stock.
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

    A subclass implements :meth:`weighted_forward`, which returns the weighted
    loss and the per-image scores, both without ``loss_weight``. This class
    multiplies both by ``loss_weight`` at the point where the stock module
    does.

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

    #: Whether the stock forward takes the pixel weight as its third argument.
    weight_is_third_argument = True

    def __call__(self, *args, **kwargs):
        if self.weight_is_third_argument:
            args, kwargs = _weight_as_keyword(args, kwargs)
        self.check_call(args, kwargs)
        if not self.context.active or kwargs.get('reduction_override') is not None:
            return self.stock_forward(*args, **kwargs)
        loss, scores = self.weighted_forward(args, kwargs)
        loss_weight = self.module.loss_weight
        self.context.record(self.role, (loss_weight * scores).detach().float())
        return loss_weight * loss

    def check_call(self, args, kwargs) -> None:
        """Raise before the stock forward runs if the call cannot succeed."""

    def stock_forward(self, *args, **kwargs):
        return type(self.module).forward(self.module, *args, **kwargs)

    def weighted_forward(self, args, kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def stock_unreduced(self, args, kwargs) -> torch.Tensor:
        """Run the stock forward with ``reduction_override='none'``, ``loss_weight`` 1.0."""
        loss_weight = self.module.loss_weight
        self.module.loss_weight = 1.0
        try:
            unreduced = self.stock_forward(*args, **dict(kwargs, reduction_override='none'))
        finally:
            self.module.loss_weight = loss_weight
        self.check_batch_dim(unreduced)
        return unreduced

    def check_batch_dim(self, per_image: torch.Tensor) -> None:
        num_images = self.context.weights.numel()
        if per_image.dim() == 0 or per_image.shape[0] != num_images:
            raise RuntimeError(
                f'{_loss_label(self.module)} returned an unreduced loss of shape '
                f'{tuple(per_image.shape)}, but the batch has {num_images} images; '
                'per-image weights need the first dimension to index images. '
                'This head calls its loss on something other than per-image maps, '
                'so train it without InfoBatch.')

    def image_weights(self, like: torch.Tensor) -> Optional[torch.Tensor]:
        """Per-image weights shaped to broadcast over ``like``, or None if all 1."""
        if self.context.all_ones:
            return None
        weights = self.context.weights.to(device=like.device)
        return weights.view(-1, *([1] * (like.dim() - 1)))

    def apply_image_weights(self, per_image: torch.Tensor) -> torch.Tensor:
        weights = self.image_weights(per_image)
        return per_image if weights is None else per_image * weights


class CrossEntropyPerImage(PerImageLoss):
    """``CrossEntropyLoss`` (softmax or sigmoid): a per-pixel loss map.

    The unreduced map already contains the pixel weights, the class weights
    and zeros at ignored pixels. The stock ``'mean'`` divides its sum by a
    denominator derived from the label alone: all elements, the non-ignored
    ones with ``avg_non_ignore``, or the summed class weights. The sigmoid
    variant without ``avg_non_ignore`` takes a plain mean instead. This class
    reproduces that denominator unchanged.

    Raises:
        UnsupportedLossError: At call time, if ``class_weight`` is set with
            ``reduction='mean'`` and the label contains a value that is not a
            valid index into ``class_weight`` (e.g. ignore_index 255). Stock
            mmseg fails on such a batch as well (see :meth:`_class_weight_sum`).
    """

    def weighted_forward(self, args, kwargs):
        unreduced = self.stock_unreduced(args, kwargs)
        label = args[1]
        ignore_index = kwargs.get('ignore_index', -100)
        valid = (label >= 0) & (label != ignore_index)
        scores = _valid_pixel_mean(unreduced, valid)

        weighted = self.apply_image_weights(unreduced)
        reduction = self.module.reduction
        avg_factor = kwargs.get('avg_factor')
        if avg_factor is None and reduction == 'mean':
            avg_factor = self._stock_avg_factor(unreduced, label, valid, ignore_index)
        return weight_reduce_loss(weighted, None, reduction, avg_factor), scores

    def _stock_avg_factor(self, unreduced, label, valid, ignore_index):
        """Return the denominator that stock ``'mean'`` uses, or None for a plain mean."""
        module = self.module
        if module.use_sigmoid:
            if not module.avg_non_ignore:
                return None
            if unreduced.dim() != label.dim():
                # The label was expanded to one-hot over the class dimension.
                return valid.unsqueeze(1).expand(unreduced.shape).float().sum().item()
            return valid.float().sum().item()
        if module.class_weight is None:
            if module.avg_non_ignore:
                return label.numel() - (label == ignore_index).sum().item()
            return label.numel()
        return self._class_weight_sum(unreduced, label, ignore_index)

    def _class_weight_sum(self, unreduced, label, ignore_index):
        """Sum ``class_weight[label]`` over the batch as stock cross_entropy does.

        Stock mmseg looks up the class weight of every label value before it
        masks ``ignore_index``, so a label such as 255 with 150 class weights
        raises IndexError there (a device-side assert on CUDA).
        """
        class_weight = unreduced.new_tensor(self.module.class_weight)
        num_weights = class_weight.numel()
        out_of_range = (label >= num_weights) | (label < -num_weights)
        if bool(out_of_range.any()):
            bad_values = torch.unique(label[out_of_range]).tolist()
            raise UnsupportedLossError(
                f'{_loss_label(self.module)}: CrossEntropyLoss with class_weight '
                f"({num_weights} values) and reduction='mean' cannot run on a batch "
                f'with label values {bad_values} (ignore_index={ignore_index}). '
                'mmseg 1.2.2 computes the mean denominator as class_weight[label] for '
                'every pixel before it masks ignored pixels, so stock mmseg fails on '
                "this batch too. Remove class_weight, use reduction='sum', or use "
                'labels without ignored pixels.')
        label_weights = torch.stack([class_weight[image_label] for image_label in label])
        label_weights = label_weights.to(device=class_weight.device)
        if self.module.avg_non_ignore:
            label_weights[label == ignore_index] = 0
        return label_weights.sum()


class DicePerImage(PerImageLoss):
    """``DiceLoss``: one Dice value per image over all classes.

    The stock ``'none'`` output is already per image, shape ``(B,)``. Stock
    Dice ignores no pixel (its ``ignore_index`` drops a class channel with
    that index), so the predictions at ignored pixels enter the denominator
    of the trained loss. The score is the image's Dice loss recomputed with
    those predictions zeroed, so it covers non-ignored pixels only.
    """

    def weighted_forward(self, args, kwargs):
        per_image = self.stock_unreduced(args, kwargs)
        weighted = self.apply_image_weights(per_image)
        loss = weight_reduce_loss(weighted, None, self.module.reduction, kwargs.get('avg_factor'))
        return loss, self._valid_pixel_dice(args[0], args[1], kwargs)

    @torch.no_grad()
    def _valid_pixel_dice(self, pred, target, kwargs):
        module = self.module
        probs = _activate_like_dice(module, pred)
        if pred.shape == target.shape:
            # One-hot targets carry no ignore label, so every pixel is valid.
            one_hot = target
            num_valid = torch.full((pred.shape[0],), pred[0, 0].numel(), device=pred.device)
        else:
            one_hot = _expand_onehot_labels_dice(pred, target)
            valid = target != kwargs.get('ignore_index', 255)
            probs = probs * valid.unsqueeze(1)
            num_valid = valid.flatten(1).sum(1)
        per_image = dice_loss(probs, one_hot, None, eps=module.eps, reduction='none',
                              naive_dice=module.naive_dice, ignore_index=module.ignore_index)
        return _nan_where_empty(per_image, num_valid)


class LovaszPerImage(PerImageLoss):
    """``LovaszLoss(per_image=True)``: one Lovasz value per image, shape ``(B,)``.

    Ignored pixels are excluded by the stock loss itself. Stock mmseg fails
    on a batch in which one image has no valid pixel (multi-class) and the
    wrapper passes that failure through.
    """

    def weighted_forward(self, args, kwargs):
        per_image = self.stock_unreduced(args, kwargs)
        weighted = self.apply_image_weights(per_image)
        loss = weight_reduce_loss(weighted, None, self.module.reduction, kwargs.get('avg_factor'))
        valid = args[1] != kwargs.get('ignore_index', 255)
        return loss, _nan_where_empty(per_image.detach(), valid.flatten(1).sum(1))


class TverskyPerImage(PerImageLoss):
    """``TverskyLoss``: per-image values recomputed from stock's own pieces.

    Stock ``TverskyLoss.forward`` drops ``reduction_override``, ``weight`` and
    ``ignore_index`` (they land in ``**kwargs``) and always returns
    ``mean over classes c != ignore_index of class_weight[c] * mean over
    images of (1 - tversky)``, summed and divided by the class count. This
    class repeats that loop with mmseg's ``binary_tversky_loss`` and
    ``reduction='none'``, so the per-class image mean runs on the same
    ``(B,)`` tensor as in stock. Pixels with ``ignore_index`` are excluded by
    stock's valid mask.
    """

    weight_is_third_argument = False

    def weighted_forward(self, args, kwargs):
        module = self.module
        pred, target = args[0], args[1]
        class_weight = None if module.class_weight is None else pred.new_tensor(module.class_weight)
        probs = F.softmax(pred, dim=1)
        num_classes = probs.shape[1]
        one_hot = F.one_hot(torch.clamp(target.long(), 0, num_classes - 1),
                            num_classes=num_classes)
        valid_mask = (target != module.ignore_index).long()

        total = 0
        per_image_total = 0
        for class_index in range(num_classes):
            if class_index == module.ignore_index:
                continue
            per_image = binary_tversky_loss(
                probs[:, class_index], one_hot[..., class_index], valid_mask=valid_mask,
                alpha=module.alpha, beta=module.beta, smooth=module.smooth, reduction='none')
            self.check_batch_dim(per_image)
            class_term = self.apply_image_weights(per_image).mean()
            if class_weight is not None:
                class_term = class_term * class_weight[class_index]
                per_image = per_image * class_weight[class_index]
            total += class_term
            per_image_total = per_image_total + per_image.detach()
        loss = weight_reduce_loss(total / num_classes, None, 'mean', None)
        scores = per_image_total / num_classes
        return loss, _nan_where_empty(scores, valid_mask.flatten(1).sum(1))


class FocalPerImage(PerImageLoss):
    """``FocalLoss`` (sigmoid): a per-pixel, per-class loss map; CUDA only.

    Stock ``'mean'`` averages the ``(B*H*W, C)`` matrix of weighted terms
    that its ``'none'`` output returns reshaped to ``(B, C, H, W)``. This
    class reshapes back to a contiguous ``(B*H*W, C)`` matrix before reducing,
    so the reduction reads the same memory layout as stock.

    NOTE: only the CPU rejection is tested here; the CUDA path was written
    against the 1.2.2 source without a GPU to run it on.
    """

    def check_call(self, args, kwargs):
        pred = args[0]
        if not pred.is_cuda:
            raise UnsupportedLossError(_focal_cpu_message(self.module, f'pred is on {pred.device}'))

    def weighted_forward(self, args, kwargs):
        unreduced = self.stock_unreduced(args, kwargs)
        label = args[1]
        ignore_index = kwargs.get('ignore_index', 255)
        if unreduced.shape == label.shape:
            valid = label.argmax(dim=1) != ignore_index  # one-hot target, as stock reads it
        else:
            valid = label != ignore_index
        scores = _valid_pixel_mean(unreduced, valid)

        weighted = self.apply_image_weights(unreduced)
        reduction = self.module.reduction
        if reduction == 'none':
            return weighted, scores
        num_classes = weighted.shape[1]
        rows = weighted.transpose(0, 1).reshape(num_classes, -1).transpose(0, 1).contiguous()
        return weight_reduce_loss(rows, None, reduction, kwargs.get('avg_factor')), scores


def _valid_pixel_mean(unreduced: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum each image's terms and divide by its count of valid pixels.

    ``unreduced`` may carry a class dimension that ``valid`` lacks; the
    classes of one pixel are summed.
    """
    per_image_sum = unreduced.detach().float().flatten(1).sum(1)
    num_valid = valid.flatten(1).sum(1)
    return _nan_where_empty(per_image_sum / num_valid.clamp(min=1), num_valid)


def _nan_where_empty(scores: torch.Tensor, num_valid: torch.Tensor) -> torch.Tensor:
    scores = scores.detach().float()
    num_valid = num_valid.to(scores.device)
    return torch.where(num_valid > 0, scores, torch.full_like(scores, float('nan')))


def _activate_like_dice(module: nn.Module, pred: torch.Tensor) -> torch.Tensor:
    """Apply the activation that stock ``DiceLoss.forward`` applies to ``pred``."""
    if not module.activate:
        return pred
    if module.use_sigmoid:
        return pred.sigmoid()
    if pred.shape[1] != 1:
        return pred.softmax(dim=1)
    return pred


def _weight_as_keyword(args, kwargs):
    """Move a positional pixel ``weight`` (third argument) into ``kwargs``."""
    if len(args) > 2:
        kwargs = dict(kwargs, weight=args[2])
        args = args[:2]
    return args, kwargs


def _loss_label(module: nn.Module) -> str:
    name = type(module).__name__
    loss_name = getattr(module, 'loss_name', None)
    return f'{name} ({loss_name})' if loss_name else name


def _focal_cpu_message(module: nn.Module, reason: str) -> str:
    return (
        f"{_loss_label(module)}: mmseg 1.2.2's FocalLoss runs only on CUDA tensors "
        "through mmcv's sigmoid_focal_loss op; its CPU fallback takes "
        'target[:, num_classes] (one column) where it needs the one-hot matrix and '
        f'fails with a size mismatch (mmseg/models/losses/focal_loss.py:293). Here {reason}. '
        'Train on a CUDA device, or use '
        "dict(type='CrossEntropyLoss', use_sigmoid=True) on CPU.")


def build_loss_hooks(module: nn.Module, context: LossContext, role: str,
                     sampler: Optional[object] = None) -> PerImageLoss:
    """Wrap a loss module's ``forward``, or raise if it has no per-image form.

    Args:
        module (nn.Module): An mmseg loss module of a decode or auxiliary head.
        context (LossContext): Shared state of the owning segmentor.
        role (str): ``'decode'`` or ``'auxiliary'``.
        sampler (object | None): The owning head's pixel sampler, if any.

    Raises:
        UnsupportedLossError: If the loss cannot give per-image values, or
            if stock mmseg cannot run it in this configuration.
    """
    name = type(module).__name__
    label = _loss_label(module)
    if name == 'CrossEntropyLoss':
        if getattr(module, 'use_mask', False):
            raise UnsupportedLossError(
                f'{label}: CrossEntropyLoss(use_mask=True) reduces over mask '
                'proposals, not images, so InfoBatch cannot weight it per image. '
                'Use use_mask=False.')
        return CrossEntropyPerImage(module, context, role)
    if name == 'DiceLoss':
        _reject_pixel_weights(label, sampler, 'dice_loss asserts weight.ndim == loss.ndim '
                              '(mmseg/models/losses/dice_loss.py:88)')
        return DicePerImage(module, context, role)
    if name == 'LovaszLoss':
        if not module.per_image:
            raise UnsupportedLossError(
                f'{label}: LovaszLoss(per_image=False) computes one Lovasz extension '
                'over the pixels of the whole batch, which has no per-image share. '
                "Use LovaszLoss(per_image=True, reduction='mean').")
        return LovaszPerImage(module, context, role)
    if name == 'TverskyLoss':
        return TverskyPerImage(module, context, role)
    if name == 'FocalLoss':
        if not torch.cuda.is_available():
            raise UnsupportedLossError(
                _focal_cpu_message(module, 'torch.cuda.is_available() is False'))
        _reject_pixel_weights(label, sampler, 'FocalLoss asserts weight.dim() == loss.dim() '
                              'for a (B, H, W) pixel weight (mmseg/models/losses/focal_loss.py:126)')
        return FocalPerImage(module, context, role)
    if name == 'OhemCrossEntropy':
        raise UnsupportedLossError(
            f'{label}: OhemCrossEntropy keeps the hardest pixels of the whole batch '
            'and returns only their mean; it has no unreduced output to split per '
            "image. Use dict(type='CrossEntropyLoss') with decode_head.sampler="
            "dict(type='OHEMPixelSampler', thresh=0.7, min_kept=100000), which "
            'InfoBatch supports.')
    if name == 'BoundaryLoss':
        raise UnsupportedLossError(
            f'{label}: BoundaryLoss (PIDNet) flattens the whole batch into one row and '
            'balances positive and negative boundary pixels with batch totals, so it '
            'has no per-image value. Train PIDNet without InfoBatch.')
    raise UnsupportedLossError(
        f'{label}: InfoBatch has no per-image rule for {name}. '
        f'Supported losses: {", ".join(SUPPORTED_LOSSES)}.')


def _reject_pixel_weights(label: str, sampler, reason: str) -> None:
    if sampler is None:
        return
    raise UnsupportedLossError(
        f'{label} cannot take the pixel weights of {type(sampler).__name__}: '
        f'{reason}, so stock mmseg 1.2.2 fails as well. Remove the head\'s sampler '
        'or use CrossEntropyLoss with it.')
