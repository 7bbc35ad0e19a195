"""The objective of a sweep: which logged metric, which direction, and its counterpart in each mode.

`train.objective` names a metric Keras logs during training (default `val_dice`, the mean foreground
dice on the validation split); training returns its best value over the epochs. Evaluation and tiled
inference return the test-split counterpart (`val_dice` -> `mean_foreground_dice`, `val_dice_tumor`
-> `dice_tumor`, `val_loss` -> `loss`), so one definition serves every mode. No TensorFlow here.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from flexseg.config.choices import Direction

SCORE_WORDS = ("dice", "iou", "acc", "sensitivity", "specificity", "precision", "recall")
# Training log names whose evaluation report line has another name.
EVAL_NAMES = {"dice": "mean_foreground_dice", "iou": "mean_foreground_iou"}


def is_score(metric: str) -> bool:
    """True for metrics where higher is better (dice, iou, accuracy, ...), False for losses."""
    return any(k in metric for k in SCORE_WORDS) and not metric.endswith("loss")


def resolve_direction(metric: str, direction: Direction) -> str:
    """'maximize' or 'minimize' for `train.objective_direction` (auto: from the metric's name)."""
    if direction == Direction.auto:
        return "maximize" if is_score(metric) else "minimize"
    return str(direction)


def best_epoch(history: list[dict[str, float]], metric: str, maximize: bool) -> Optional[dict[str, float]]:
    """The history row (one per epoch) with the best finite value of `metric`, or None."""
    rows = [r for r in history if metric in r and math.isfinite(r[metric])]
    if not rows:
        return None
    return (max if maximize else min)(rows, key=lambda r: r[metric])


def counterpart(metric: str) -> str:
    """The evaluation report's name for a training metric: `val_dice` -> `mean_foreground_dice`."""
    name = metric.removeprefix("val_")
    return EVAL_NAMES.get(name, name)


def pick(results: Mapping[str, float], metric: str) -> float:
    """The value of `metric`'s counterpart in a mode's results (mean foreground dice when it has none)."""
    key = counterpart(metric)
    if key in results:
        return float(results[key])
    return float(results.get("mean_foreground_dice", math.nan))
