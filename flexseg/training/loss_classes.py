"""Parametrised losses as `keras.losses.Loss` classes: nnU-Net's Dice + CE, focal and Tversky.

Each takes probabilities (softmax over K classes, or one sigmoid channel), never logits, and saves
its arguments with the model (`get_config`). Targets are one-hot (B, H, W, K) or 0/1 (B, H, W, 1).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from flexseg.training.loss_functions import EPSILON, cast_float32, mean_bce


def per_replica(value: Any) -> Any:
    """A batch-pooled scalar loss as shape (1,), so Keras scales it under a distribution strategy.

    Keras divides a loss by the number of replicas (gradients are summed over them, the logged
    loss is multiplied back) only for values with a batch axis; a scalar passes unscaled, which
    doubled the gradients and the logged loss on 2 replicas. (1,) reduces to the same value.
    """
    return ops.reshape(value, (1,))


def _foreground(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Drop the background channel: (B, H, W, K) -> (B, H, W, K - 1); binary (K = 1) unchanged."""
    t, p = cast_float32(y_true, y_pred)
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
    t, p = cast_float32(y_true, y_pred)
    if p.shape[-1] == 1:
        return mean_bce(t, p)
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
        """(B, H, W, K) targets and probabilities -> (1,) (`per_replica`)."""
        tp, fp, fn = _per_class_sums(*_foreground(y_true, y_pred))
        dice = (2.0 * tp + self.smooth) / (2.0 * tp + fp + fn + self.smooth)
        return per_replica(_crossentropy(y_true, y_pred) + 1.0 - ops.mean(dice))

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
        """(B, H, W, K) targets and probabilities -> (1,) (`per_replica`)."""
        t, p = cast_float32(y_true, y_pred)
        p = ops.clip(p, EPSILON, 1.0 - EPSILON)
        if p.shape[-1] == 1:
            pos = self.alpha * t * (1.0 - p) ** self.gamma * ops.log(p)
            neg = (1.0 - self.alpha) * (1.0 - t) * p**self.gamma * ops.log(1.0 - p)
            return per_replica(-ops.mean(pos + neg))
        return per_replica(-ops.mean(ops.sum(self.alpha * t * (1.0 - p) ** self.gamma * ops.log(p), axis=-1)))

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
        """(B, H, W, K) targets and probabilities -> (1,) (`per_replica`)."""
        tp, fp, fn = _per_class_sums(*_foreground(y_true, y_pred))
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return per_replica(1.0 - ops.mean(index))

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for ``.keras`` saving."""
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="flexseg")
class FunctionLoss(keras.losses.Loss):
    """One of the reference's loss functions (`flexseg.training.loss_functions`, by name) as a Loss
    whose batch-pooled value Keras scales under a strategy (`per_replica`).

    Args:
        function: Name of a function in `flexseg.training.loss_functions` (e.g. "bce_dice_loss").
        name: Loss name; default `function`.
    """

    def __init__(self, function: str, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or function, **kwargs)
        from flexseg.training import loss_functions

        self.function = function
        self._fn = getattr(loss_functions, function)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """(B, H, W, K) targets and probabilities -> (1,)."""
        return per_replica(self._fn(y_true, y_pred))

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for ``.keras`` saving."""
        return {**super().get_config(), "function": self.function}
