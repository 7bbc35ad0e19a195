"""The reference's losses as functions on probabilities, and the soft dice / IoU they are built on.

Targets are one-hot (B, H, W, K) or 0/1 (B, H, W, 1); predictions are probabilities of the same
shape (softmax, or one sigmoid channel). All sums run in float32, also under mixed precision
(float16 sums overflow at 65504). The reference names keep the reference formulas, including their
halving and thirding, so logged loss values compare with the reference's.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

EPSILON = 1e-7  # probability clipping for logarithms, as keras.backend.epsilon()


def cast_float32(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Both tensors as float32."""
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
    t, p = cast_float32(y_true, y_pred)
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
    t, p = cast_float32(y_true, y_pred)
    t, p = ops.reshape(t, [-1]), ops.reshape(p, [-1])
    intersection = ops.sum(t * p)
    return (intersection + smooth) / (ops.sum(t + p - t * p) + smooth)


def mean_bce(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy averaged over every element, (B, H, W, C) -> scalar float32."""
    t, p = cast_float32(y_true, y_pred)
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
    return (mean_bce(y_true, y_pred) + dice_loss(y_true, y_pred)) / 2.0


@keras.saving.register_keras_serializable(package="flexseg")
def bce_iou_loss(y_true: Any, y_pred: Any) -> Any:
    """``(BCE + iou_loss) / 2``, as in the reference. Shapes as ``bce_dice_loss``."""
    return (mean_bce(y_true, y_pred) + iou_loss(y_true, y_pred)) / 2.0


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
    t, p = cast_float32(y_true, y_pred)
    ssim_loss = 1.0 - ops.mean(tf.image.ssim(t, p, max_val=1.0))
    return (mean_bce(t, p) + ssim_loss + iou_loss(t, p)) / 3.0


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
