"""Keras losses by name: the reference's soft dice and BCE+dice, plus Keras cross-entropies.

Models output probabilities (softmax over K classes, or one sigmoid channel for binary), so every
loss here takes probabilities, never logits. ``get_loss`` maps the ``train.loss`` config value to
a loss through the ``LOSSES`` registry.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

from flexseg.errors import FlexsegError


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
    # float32 even under mixed precision: float16 sums over a batch of pixels overflow at 65504.
    y_true_f = ops.reshape(ops.cast(y_true, "float32"), [-1])
    y_pred_f = ops.reshape(ops.cast(y_pred, "float32"), [-1])
    intersection = ops.sum(y_true_f * y_pred_f)
    return (2.0 * intersection + smooth) / (ops.sum(y_true_f) + ops.sum(y_pred_f) + smooth)


@keras.saving.register_keras_serializable(package="flexseg")
def bce_dice_loss(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy (mean over pixels) plus ``1 - dice_coef``, as in the reference.

    Args:
        y_true: 0/1 targets (B, H, W, 1) (one-hot (B, H, W, K) also works: BCE per channel).
        y_pred: Sigmoid probabilities of the same shape.

    Returns:
        Scalar tensor.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return bce + (1.0 - dice_coef(y_true, y_pred))


LOSSES: dict[str, Callable[..., Any]] = {
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy(),
    "binary_crossentropy": keras.losses.BinaryCrossentropy(),
    "bce_dice_loss": bce_dice_loss,
}


def get_loss(name: str) -> Callable[..., Any]:
    """Look up the loss for a ``train.loss`` config value.

    Args:
        name: A key of ``LOSSES``.

    Returns:
        The loss: a ``keras.losses.Loss`` instance or a function ``(y_true, y_pred) -> scalar``.

    Raises:
        FlexsegError: ``name`` is not in ``LOSSES``; the message lists the valid names.
    """
    try:
        return LOSSES[name]
    except KeyError:
        raise FlexsegError(
            f"train.loss='{name}' is unknown; available: {', '.join(sorted(LOSSES))}."
        ) from None
