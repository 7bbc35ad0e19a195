"""Keras losses by name: the reference's losses, nnU-Net's Dice+CE, focal and Tversky.

Models output probabilities (softmax over K classes, or one sigmoid channel for binary), so every
loss here takes probabilities, never logits. Targets are one-hot (B, H, W, K) or 0/1 (B, H, W, 1).
All sums run in float32, also under mixed precision (float16 sums overflow at 65504).

``get_loss`` maps the ``train.loss`` config value (and ``train.loss_args``) to a loss through the
``LOSSES`` registry. The reference names (``bce_dice_loss``, ``bce_iou_loss``, ``dice_loss``,
``iou_loss``, ``basnet_hybrid_loss``) keep the reference formulas, including their halving and
thirding, so logged loss values compare with the reference's.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import keras
import tensorflow as tf
from keras import ops

from flexseg.errors import FlexsegError

EPSILON = 1e-7  # probability clipping for logarithms, as keras.backend.epsilon()


def _f32(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


@keras.saving.register_keras_serializable(package="flexseg")
def dice_coef(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """Soft dice over the whole batch flattened, as in the reference.

    ``(2 * sum(t * p) + smooth) / (sum(t) + sum(p) + smooth)``. All classes and all images are
    pooled into one score, so for multi-class inputs the background counts like any class.

    Args:
        y_true: Targets, one-hot (B, H, W, K) or 0/1 (B, H, W, 1).
        y_pred: Probabilities of the same shape.
        smooth: Added to numerator and denominator; keeps empty masks at 1 instead of 0/0.

    Returns:
        Scalar float32 tensor in [0, 1].
    """
    t, p = _f32(y_true, y_pred)
    t, p = ops.reshape(t, [-1]), ops.reshape(p, [-1])
    return (2.0 * ops.sum(t * p) + smooth) / (ops.sum(t) + ops.sum(p) + smooth)


@keras.saving.register_keras_serializable(package="flexseg")
def iou_coef(y_true: Any, y_pred: Any, smooth: float = EPSILON) -> Any:
    """Soft IoU (Jaccard) over the whole batch flattened, as the reference's ``iou_coef``.

    ``(sum(t * p) + smooth) / (sum(t + p - t * p) + smooth)``. The reference has no ``smooth``
    and returns NaN (0/0) when truth and prediction are both empty; the tiny default here makes
    that case 1 and changes other values by less than 1e-7 relative.

    Args:
        y_true: Targets, one-hot (B, H, W, K) or 0/1 (B, H, W, 1).
        y_pred: Probabilities of the same shape.
        smooth: Added to numerator and denominator.

    Returns:
        Scalar float32 tensor in [0, 1].
    """
    t, p = _f32(y_true, y_pred)
    t, p = ops.reshape(t, [-1]), ops.reshape(p, [-1])
    intersection = ops.sum(t * p)
    return (intersection + smooth) / (ops.sum(t + p - t * p) + smooth)


def _mean_bce(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy averaged over every element, (B, H, W, C) -> scalar float32."""
    t, p = _f32(y_true, y_pred)
    p = ops.clip(p, EPSILON, 1.0 - EPSILON)
    return -ops.mean(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))


@keras.saving.register_keras_serializable(package="flexseg")
def dice_loss(y_true: Any, y_pred: Any) -> Any:
    """``1 - dice_coef`` (reference). Shapes as ``dice_coef``; returns a scalar."""
    return 1.0 - dice_coef(y_true, y_pred)


@keras.saving.register_keras_serializable(package="flexseg")
def iou_loss(y_true: Any, y_pred: Any) -> Any:
    """``1 - iou_coef`` (reference). Shapes as ``iou_coef``; returns a scalar."""
    return 1.0 - iou_coef(y_true, y_pred)


@keras.saving.register_keras_serializable(package="flexseg")
def bce_dice_loss(y_true: Any, y_pred: Any) -> Any:
    """``(BCE + dice_loss) / 2``, as in the reference (BCE averaged over all pixels and channels).

    Args:
        y_true: 0/1 targets (B, H, W, 1) (one-hot (B, H, W, K) also works: BCE per channel).
        y_pred: Sigmoid probabilities of the same shape.

    Returns:
        Scalar float32 tensor.
    """
    return (_mean_bce(y_true, y_pred) + dice_loss(y_true, y_pred)) / 2.0


@keras.saving.register_keras_serializable(package="flexseg")
def bce_iou_loss(y_true: Any, y_pred: Any) -> Any:
    """``(BCE + iou_loss) / 2``, as in the reference. Shapes as ``bce_dice_loss``."""
    return (_mean_bce(y_true, y_pred) + iou_loss(y_true, y_pred)) / 2.0


@keras.saving.register_keras_serializable(package="flexseg")
def basnet_hybrid_loss(y_true: Any, y_pred: Any) -> Any:
    """``(BCE + (1 - SSIM) + iou_loss) / 3``: the BASNet hybrid loss as the reference computes it.

    SSIM is ``tf.image.ssim`` (11x11 Gaussian window, sigma 1.5, max_val 1) per image, averaged
    over channels and then over the batch.

    Args:
        y_true: Targets (B, H, W, C) with H, W >= 11.
        y_pred: Probabilities of the same shape.

    Returns:
        Scalar float32 tensor.
    """
    t, p = _f32(y_true, y_pred)
    ssim_loss = 1.0 - ops.mean(tf.image.ssim(t, p, max_val=1.0))
    return (_mean_bce(t, p) + ssim_loss + iou_loss(t, p)) / 3.0


@keras.saving.register_keras_serializable(package="flexseg")
def sparse_categorical_crossentropy(y_true: Any, y_pred: Any) -> Any:
    """Cross-entropy against class indices; one-hot targets are turned into indices first.

    The flexseg pipeline yields one-hot targets, for which this equals categorical
    cross-entropy; the name exists so reference configs that use it run unchanged.

    Args:
        y_true: Class indices (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, K) with K > 1.
        y_pred: Softmax probabilities (B, H, W, K).

    Returns:
        Scalar float32 tensor (mean over pixels).
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.convert_to_tensor(y_true)
    num_classes = y_pred.shape[-1]
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.argmax(y_true, axis=-1) if y_true.shape[-1] == num_classes and num_classes > 1 else y_true[..., 0]
    return ops.mean(keras.losses.sparse_categorical_crossentropy(ops.cast(y_true, "int32"), y_pred))


def _foreground(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Drop the background channel: (B, H, W, K) -> (B, H, W, K - 1); binary (K = 1) unchanged."""
    t, p = _f32(y_true, y_pred)
    if p.shape[-1] > 1:
        t, p = t[..., 1:], p[..., 1:]
    return t, p


def _per_class_sums(t: Any, p: Any) -> tuple[Any, Any, Any]:
    """Soft TP, FP, FN per channel, summed over the batch and all pixels: 3 x (C,)."""
    axes = tuple(range(len(t.shape) - 1))
    tp = ops.sum(t * p, axis=axes)
    return tp, ops.sum((1.0 - t) * p, axis=axes), ops.sum(t * (1.0 - p), axis=axes)


def _crossentropy(y_true: Any, y_pred: Any) -> Any:
    """Categorical CE (K > 1) or binary CE (K = 1), mean over pixels, float32 scalar."""
    t, p = _f32(y_true, y_pred)
    if p.shape[-1] == 1:
        return _mean_bce(t, p)
    return -ops.mean(ops.sum(t * ops.log(ops.clip(p, EPSILON, 1.0)), axis=-1))


@keras.saving.register_keras_serializable(package="flexseg")
class DiceCELoss(keras.losses.Loss):
    """nnU-Net's Dice + cross-entropy: ``CE + (1 - mean foreground soft dice)``.

    The soft dice of each foreground class pools the whole batch ("batch dice", as nnU-Net's 2D
    configurations): ``(2 TP + smooth) / (2 TP + FP + FN + smooth)``; background (channel 0) is
    left out of the dice part only. With one sigmoid channel, CE is binary and the dice is that
    channel's.

    Args:
        smooth: Added to numerator and denominator of every class's dice.
        name: Loss name.
    """

    def __init__(self, smooth: float = 1e-5, name: str = "dice_ce_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """(B, H, W, K) targets and probabilities -> scalar."""
        tp, fp, fn = _per_class_sums(*_foreground(y_true, y_pred))
        dice = (2.0 * tp + self.smooth) / (2.0 * tp + fp + fn + self.smooth)
        return _crossentropy(y_true, y_pred) + 1.0 - ops.mean(dice)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for ``.keras`` saving."""
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="flexseg")
class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017) on probabilities, mean over pixels.

    Multi-class (K > 1): ``-sum_c alpha * t_c * (1 - p_c)^gamma * log(p_c)``. Binary (K = 1):
    ``-(alpha * t * (1 - p)^gamma * log(p) + (1 - alpha) * (1 - t) * p^gamma * log(1 - p))``.
    ``gamma = 0, alpha = 1`` (multi-class) gives plain cross-entropy.

    Args:
        gamma: Focusing exponent >= 0.
        alpha: Weight of the positive term (binary) or of every class (multi-class), in (0, 1].
        name: Loss name.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, name: str = "focal_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if gamma < 0 or not 0 < alpha <= 1:
            raise ValueError(f"focal loss needs gamma >= 0 and 0 < alpha <= 1, got gamma={gamma}, alpha={alpha}.")
        self.gamma, self.alpha = float(gamma), float(alpha)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """(B, H, W, K) targets and probabilities -> scalar."""
        t, p = _f32(y_true, y_pred)
        p = ops.clip(p, EPSILON, 1.0 - EPSILON)
        if p.shape[-1] == 1:
            pos = self.alpha * t * (1.0 - p) ** self.gamma * ops.log(p)
            neg = (1.0 - self.alpha) * (1.0 - t) * p**self.gamma * ops.log(1.0 - p)
            return -ops.mean(pos + neg)
        return -ops.mean(ops.sum(self.alpha * t * (1.0 - p) ** self.gamma * ops.log(p), axis=-1))

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for ``.keras`` saving."""
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="flexseg")
class TverskyLoss(keras.losses.Loss):
    """Tversky loss (Salehi et al. 2017): ``1 - mean_c TI_c`` over the foreground classes.

    ``TI_c = (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)`` with soft counts pooled over
    the batch; alpha = beta = 0.5 is the soft dice. beta > alpha penalises missed foreground more
    than false alarms (small structures). Background (channel 0 of a softmax) is left out.

    Args:
        alpha: Weight of false positives, >= 0.
        beta: Weight of false negatives, >= 0.
        smooth: Added to numerator and denominator.
        name: Loss name.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1e-5, name: str = "tversky_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"tversky loss needs alpha, beta >= 0 and not both 0, got alpha={alpha}, beta={beta}.")
        self.alpha, self.beta, self.smooth = float(alpha), float(beta), float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """(B, H, W, K) targets and probabilities -> scalar."""
        tp, fp, fn = _per_class_sums(*_foreground(y_true, y_pred))
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1.0 - ops.mean(index)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for ``.keras`` saving."""
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "smooth": self.smooth}


def _constant(loss: Any) -> Callable[[], Any]:
    """A factory without parameters that returns the shared ``loss`` object."""
    return lambda: loss


# name -> factory; the factory's keyword arguments are the values `train.loss_args` may set.
LOSSES: dict[str, Callable[..., Any]] = {
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": _constant(sparse_categorical_crossentropy),
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "bce_dice_loss": _constant(bce_dice_loss),
    "bce_iou_loss": _constant(bce_iou_loss),
    "dice_loss": _constant(dice_loss),
    "iou_loss": _constant(iou_loss),
    "basnet_hybrid_loss": _constant(basnet_hybrid_loss),
    "dice_ce_loss": DiceCELoss,
    "focal_loss": FocalLoss,
    "tversky_loss": TverskyLoss,
}
# Keras's own cross-entropy classes take many keyword arguments; only these are exposed.
_KERAS_ARGS = {"categorical_crossentropy": ("label_smoothing",), "binary_crossentropy": ("label_smoothing",)}


def loss_parameters(name: str) -> tuple[str, ...]:
    """Names of the ``train.loss_args`` keys the loss ``name`` accepts."""
    if name in _KERAS_ARGS:
        return _KERAS_ARGS[name]
    params = inspect.signature(LOSSES[name]).parameters.values()
    return tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "name")


def get_loss(name: str, args: Mapping[str, float] | None = None) -> Any:
    """Build the loss for a ``train.loss`` config value.

    Args:
        name: A key of ``LOSSES``.
        args: Keyword arguments of the loss (``train.loss_args``), e.g. ``{"alpha": 0.3}``.

    Returns:
        A ``keras.losses.Loss`` instance or a function ``(y_true, y_pred) -> scalar``.

    Raises:
        FlexsegError: ``name`` is unknown, or ``args`` holds a key the loss does not take or a
            value it rejects; the message lists the valid choices.
    """
    if name not in LOSSES:
        raise FlexsegError(f"train.loss='{name}' is unknown; available: {', '.join(sorted(LOSSES))}.")
    args = dict(args or {})
    valid = loss_parameters(name)
    unknown = sorted(set(args) - set(valid))
    if unknown:
        takes = f"it takes {', '.join(valid)}" if valid else "it takes none"
        raise FlexsegError(
            f"train.loss_args has {', '.join(unknown)}, which train.loss='{name}' does not take; {takes}."
        )
    try:
        return LOSSES[name](**args)
    except ValueError as err:
        raise FlexsegError(f"train.loss_args={args} for train.loss='{name}': {err}") from None
