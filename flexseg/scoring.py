"""Scores of label maps in numpy: probabilities -> labels, confusion counts -> per-class dice/IoU.

Shared by eval, tiled, stats and the epoch pictures; below both `flexseg.training` and
`flexseg.inference`, so no import runs back up the stages. Pure numpy, no TensorFlow.
A class absent from truth and prediction scores NaN and is left out of foreground means.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def labels_from_probs(probs: np.ndarray) -> np.ndarray:
    """Model output or one-hot target (..., K) -> (...) uint8 class indices.

    K = 1 is a sigmoid (binary) output: foreground where the probability is above 0.5.
    """
    probs = np.asarray(probs)
    if probs.shape[-1] == 1:
        return (probs[..., 0] > 0.5).astype(np.uint8)
    return probs.argmax(-1).astype(np.uint8)

def compute_confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts of two integer label maps.

    Args:
        y_true: Truth class indices, any shape, values in [0, K).
        y_pred: Predicted class indices, same shape.
        num_classes: K (2 for a binary task).

    Returns:
        (K, K) int64 counts; rows are truth, columns prediction.

    Raises:
        ValueError: The shapes differ or a label lies outside [0, K).
    """
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError(
            f"y_true and y_pred shapes differ: {np.shape(y_true)} vs {np.shape(y_pred)}."
        )
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    for label, values in (("y_true", t), ("y_pred", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{label} values must lie in [0, {num_classes}), got "
                             f"[{values.min()}, {values.max()}].")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator as float64, NaN where the denominator is 0."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def compute_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class dice, IoU, precision and recall from a confusion matrix.

    Args:
        confusion: (K, K) counts, rows truth, columns prediction.

    Returns:
        ``{"dice", "iou", "precision", "recall"}`` -> (K,) float64 arrays. dice/IoU are NaN for a
        class absent from both truth and prediction; precision is NaN for a class never
        predicted, recall for a class never in the truth.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    return {"dice": _ratio(2 * tp, 2 * tp + fp + fn), "iou": _ratio(tp, tp + fp + fn),
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}


def nanmean_foreground(values: np.ndarray) -> float:
    """Mean of (K,) per-class ``values`` over classes 1.. (no background), ignoring NaN.

    Returns NaN (without a warning) when no foreground value is left.
    """
    foreground = np.asarray(values, dtype=np.float64)[1:]
    foreground = foreground[~np.isnan(foreground)]
    return float(foreground.mean()) if foreground.size else float("nan")


def image_scores(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """One row of a per-image table: foreground means, then dice and IoU per class (NaN: absent from both).

    Args:
        confusion: (K, K) counts of one image (or of all images, for a total row).
        class_names: K names, background first.
    """
    scores = compute_scores(confusion)
    row = {"mean_foreground_dice": nanmean_foreground(scores["dice"]),
           "mean_foreground_iou": nanmean_foreground(scores["iou"])}
    for metric in ("dice", "iou"):
        row.update({f"{metric}_{n}": float(v) for n, v in zip(class_names, scores[metric])})
    return row
