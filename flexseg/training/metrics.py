"""Segmentation metrics: Keras metrics by name for training, numpy scores for evaluation reports.

Reference metrics (kept formula for formula, so numbers compare with published ones):
``dice_coef`` (soft dice of the whole batch flattened), ``dice_coef_multiclass`` (soft dice of
each image with all K channels pooled, *background included*, averaged over the batch),
``iou_coef``, ``sensitivity``, ``specificity``. The background inflates ``dice_coef_multiclass``:
an all-background prediction of a 1%-foreground mask scores ~0.99.

Honest metrics: ``ForegroundDice`` / ``ForegroundIoU`` (logged as ``dice``/``iou`` and
``dice_<class>``/``iou_<class>``) harden predictions, pool counts over the epoch, leave the
background out of the mean, and report a class absent from truth and prediction as NaN, left out
of the mean. `flexseg.scoring` does the same in numpy on integer label maps for evaluation reports.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import keras
from keras import ops

from flexseg.errors import FlexsegError
from flexseg.training.losses import EPSILON, dice_coef, iou_coef


@keras.saving.register_keras_serializable(package="flexseg")
def dice_coef_multiclass(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """Reference metric: soft dice of each image over all K channels pooled, mean over the batch.

    Per image b: ``(2 * sum_{h,w,c} t * p + smooth) / (sum t + sum p + smooth)``, exactly the
    reference TensorFlowFlexUNet's ``dice_coef_multiclass``. Background counts like any class:
    with one-hot targets and softmax outputs the denominator is ``2 * H * W``, so the score is
    close to the soft pixel accuracy.

    Args:
        y_true: One-hot targets (B, H, W, K), or 0/1 targets (B, H, W, 1).
        y_pred: Probabilities of the same shape.
        smooth: Added to numerator and denominator of every image's score.

    Returns:
        Scalar float32 tensor in [0, 1].
    """
    t = ops.cast(y_true, "float32")
    p = ops.cast(y_pred, "float32")  # float16 sums overflow; see dice_coef
    axes = tuple(range(1, len(p.shape)))
    intersection = ops.sum(t * p, axis=axes)
    union = ops.sum(t, axis=axes) + ops.sum(p, axis=axes)
    return ops.mean((2.0 * intersection + smooth) / (union + smooth))


@keras.saving.register_keras_serializable(package="flexseg")
def sensitivity(y_true: Any, y_pred: Any) -> Any:
    """Reference metric: ``sum(round(t * p)) / (sum(round(t)) + eps)`` over the batch flattened.

    For one-hot multi-class inputs every channel counts, the background included.

    Args:
        y_true: Targets (B, H, W, K|1).
        y_pred: Probabilities of the same shape.

    Returns:
        Scalar float32 tensor.
    """
    t = ops.cast(y_true, "float32")
    p = ops.cast(y_pred, "float32")
    true_positives = ops.sum(ops.round(ops.clip(t * p, 0.0, 1.0)))
    return true_positives / (ops.sum(ops.round(ops.clip(t, 0.0, 1.0))) + EPSILON)


@keras.saving.register_keras_serializable(package="flexseg")
def specificity(y_true: Any, y_pred: Any) -> Any:
    """Reference metric: ``sum(round((1-t)(1-p))) / (sum(round(1-t)) + eps)``; shapes as ``sensitivity``."""
    t = ops.cast(y_true, "float32")
    p = ops.cast(y_pred, "float32")
    true_negatives = ops.sum(ops.round(ops.clip((1.0 - t) * (1.0 - p), 0.0, 1.0)))
    return true_negatives / (ops.sum(ops.round(ops.clip(1.0 - t, 0.0, 1.0))) + EPSILON)


class _ForegroundScore(keras.metrics.Metric):
    """Hard per-class counts accumulated over an epoch; a NaN-aware mean of a score over classes.

    Predictions are hardened by argmax over K (multi-class) or ``p > 0.5`` (binary, where the
    classes become {0: background, 1: foreground}); targets likewise. Per class c the state holds
    intersection I_c, truth count T_c and prediction count P_c; ``result()`` is the mean of the
    score over the selected classes, skipping classes with ``T_c + P_c == 0`` (absent from both);
    NaN if every selected class is absent.

    Args:
        num_classes: Model output channels K; 1 means binary (sigmoid).
        class_ids: Classes to average; None means all foreground classes (1..K-1, or [1] binary).
        name: Metric name as Keras logs it.
        dtype: Dtype of the state variables and result.
    """

    def __init__(self, num_classes: int, class_ids: Optional[Sequence[int]] = None,
                 name: str = "score", dtype: Any = "float32") -> None:
        super().__init__(name=name, dtype=dtype)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.num_states = max(self.num_classes, 2)
        ids = range(1, self.num_states) if class_ids is None else class_ids
        self.class_ids = [int(c) for c in ids]
        if not self.class_ids or any(not 0 <= c < self.num_states for c in self.class_ids):
            raise ValueError(
                f"class_ids must be a non-empty subset of 0..{self.num_states - 1}, "
                f"got {class_ids}."
            )
        shape = (self.num_states,)
        self.intersection = self.add_variable(shape, "zeros", self.dtype, name="intersection")
        self.true_count = self.add_variable(shape, "zeros", self.dtype, name="true_count")
        self.pred_count = self.add_variable(shape, "zeros", self.dtype, name="pred_count")

    def _to_one_hot(self, y: Any) -> Any:
        """Harden (B, H, W, K) probabilities or targets into one-hot (B, H, W, num_states)."""
        y = ops.convert_to_tensor(y)
        if self.num_classes == 1:
            labels = ops.cast(y[..., 0] > 0.5, "int32")
        else:
            labels = ops.argmax(y, axis=-1)
        return ops.one_hot(labels, self.num_states, dtype=self.dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch's counts.

        Args:
            y_true: One-hot (B, H, W, K) or 0/1 (B, H, W, 1) targets.
            y_pred: Probabilities of the same shape.
            sample_weight: Optional weights, (B,), (B, H, W) or (B, H, W, 1).
        """
        t = self._to_one_hot(y_true)
        p = self._to_one_hot(y_pred)
        both = t * p
        if sample_weight is not None:
            w = ops.cast(sample_weight, self.dtype)
            while len(w.shape) < len(t.shape):
                w = ops.expand_dims(w, -1)
            t, p, both = t * w, p * w, both * w
        axes = tuple(range(len(t.shape) - 1))
        self.intersection.assign_add(ops.sum(both, axis=axes))
        self.true_count.assign_add(ops.sum(t, axis=axes))
        self.pred_count.assign_add(ops.sum(p, axis=axes))

    def _score(self, intersection: Any, denom: Any) -> Any:
        """Per-class score from I and T + P (denominators already made non-zero)."""
        raise NotImplementedError

    def result(self) -> Any:
        """Mean score over the selected classes, NaN-ignoring; NaN if all are absent."""
        denom = ops.take(self.true_count + self.pred_count, self.class_ids)
        score = self._score(ops.take(self.intersection, self.class_ids), ops.where(denom > 0, denom, 1.0))
        present = ops.cast(denom > 0, self.dtype)
        return ops.sum(score * present) / ops.sum(present)  # 0 / 0 = NaN when all are absent

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for ``.keras`` saving."""
        return {**super().get_config(), "num_classes": self.num_classes,
                "class_ids": list(self.class_ids)}


@keras.saving.register_keras_serializable(package="flexseg")
class ForegroundDice(_ForegroundScore):
    """Hard dice ``2 I_c / (T_c + P_c)``, NaN-aware mean over classes; see ``_ForegroundScore``."""

    def __init__(self, num_classes: int, class_ids: Optional[Sequence[int]] = None,
                 name: str = "dice", dtype: Any = "float32") -> None:
        super().__init__(num_classes, class_ids, name=name, dtype=dtype)

    def _score(self, intersection: Any, denom: Any) -> Any:
        return 2.0 * intersection / denom


@keras.saving.register_keras_serializable(package="flexseg")
class ForegroundIoU(_ForegroundScore):
    """Hard IoU ``I_c / (T_c + P_c - I_c)``, NaN-aware mean over classes; see ``_ForegroundScore``."""

    def __init__(self, num_classes: int, class_ids: Optional[Sequence[int]] = None,
                 name: str = "iou", dtype: Any = "float32") -> None:
        super().__init__(num_classes, class_ids, name=name, dtype=dtype)

    def _score(self, intersection: Any, denom: Any) -> Any:
        return intersection / (denom - intersection)  # denom >= I; equal only when I = T = P = 0


def _foreground_builder(kind: type[_ForegroundScore], prefix: str) -> Callable[[int, Sequence[str]], list]:
    """Builder of the foreground mean ``<prefix>`` plus one ``<prefix>_<class>`` per foreground class."""

    def build(num_classes: int, class_names: Sequence[str]) -> list:
        expected = max(num_classes, 2)
        if len(class_names) != expected:
            raise FlexsegError(
                f"metric '{prefix}' needs {expected} class names (background first) for "
                f"{num_classes} model output(s), got {len(class_names)}: {list(class_names)}."
            )
        per_class = [kind(num_classes, class_ids=[c], name=f"{prefix}_{class_names[c]}") for c in range(1, expected)]
        return [kind(num_classes, name=prefix), *per_class]

    return build


def _function(fn: Callable[..., Any]) -> Callable[[int, Sequence[str]], list]:
    return lambda num_classes, class_names: [fn]


METRICS: dict[str, Callable[[int, Sequence[str]], list]] = {
    "dice_coef_multiclass": _function(dice_coef_multiclass),
    "dice_coef": _function(dice_coef),
    "iou_coef": _function(iou_coef),
    "sensitivity": _function(sensitivity),
    "specificity": _function(specificity),
    "dice": _foreground_builder(ForegroundDice, "dice"),
    "iou": _foreground_builder(ForegroundIoU, "iou"),
}


def build_metrics(names: Sequence[str], num_classes: int, class_names: Sequence[str]) -> list:
    """Keras metrics for ``model.compile`` from ``train.metrics`` names.

    ``"dice"`` / ``"iou"`` expand to the foreground mean plus one ``dice_<class>`` /
    ``iou_<class>`` per foreground class; the other names give one function metric each, logged
    under the function's name.

    Args:
        names: Keys of ``METRICS``.
        num_classes: Model output channels K; 1 means binary.
        class_names: Dataset class names, background first (2 names when binary).

    Returns:
        Metric functions and metric instances, in the order named.

    Raises:
        FlexsegError: A name is unknown or repeated, or class_names does not fit num_classes.
    """
    metrics: list = []
    for name in names:
        if name not in METRICS:
            raise FlexsegError(
                f"train.metrics entry '{name}' is unknown; available: {', '.join(sorted(METRICS))}."
            )
        if list(names).count(name) > 1:
            raise FlexsegError(f"train.metrics lists '{name}' more than once: {list(names)}.")
        metrics.extend(METRICS[name](num_classes, class_names))
    return metrics


def metric_log_names(names: Sequence[str], num_classes: int, class_names: Sequence[str]) -> list[str]:
    """The keys Keras logs for ``train.metrics`` (without the ``val_`` twins), e.g. ``dice_tumor``."""
    return [m.name if isinstance(m, keras.metrics.Metric) else m.__name__
            for m in build_metrics(names, num_classes, class_names)]
