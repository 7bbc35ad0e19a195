"""Keras losses by name: the reference's losses, nnU-Net's Dice+CE, focal and Tversky.

Models output probabilities (softmax over K classes, or one sigmoid channel for binary), so every
loss here takes probabilities, never logits. Targets are one-hot (B, H, W, K) or 0/1 (B, H, W, 1).

``get_loss`` maps the ``train.loss`` config value (and ``train.loss_args``) to a loss through the
``LOSSES`` registry. The losses live in `flexseg.training.loss_functions` (the reference's, as
functions) and `flexseg.training.loss_classes` (parametrised ``keras.losses.Loss`` classes); this
module re-exports them. Which names need a softmax over K > 1 outputs is checked at config time
(`flexseg.config.validation.MULTICLASS_ONLY_LOSSES`, without importing TensorFlow).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import keras

from flexseg.errors import FlexsegError
from flexseg.training.loss_classes import DiceCELoss, FocalLoss, FunctionLoss, TverskyLoss
from flexseg.training.loss_functions import (
    EPSILON,
    basnet_hybrid_loss,
    bce_dice_loss,
    bce_iou_loss,
    dice_coef,
    dice_loss,
    iou_coef,
    iou_loss,
    sparse_categorical_crossentropy,
)

__all__ = [
    "EPSILON", "LOSSES", "DiceCELoss", "FocalLoss", "TverskyLoss", "basnet_hybrid_loss", "bce_dice_loss",
    "bce_iou_loss", "dice_coef", "dice_loss", "get_loss", "iou_coef", "iou_loss", "loss_parameters",
    "sparse_categorical_crossentropy",
]


def _constant(loss: Callable[..., Any]) -> Callable[[], Any]:
    """A factory without parameters for a reference loss function, wrapped as a `FunctionLoss`."""
    return lambda: FunctionLoss(loss.__name__)


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
        A ``keras.losses.Loss`` instance (the reference's functions wrapped in `FunctionLoss`).

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
