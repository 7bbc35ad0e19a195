"""Stop a sweep trial early when its pruner (Optuna's median or Hyperband) says it is hopeless."""

from __future__ import annotations

import math
from typing import Callable, Optional

import keras


class TrialPruning(keras.callbacks.Callback):
    """After each epoch, report `metric` to `report(epoch, value) -> stop?`; stop training on True.

    Runs after the epoch recorder, so the epoch that triggers the stop is committed and logged.
    """

    def __init__(self, metric: str, report: Callable[[int, float], bool]) -> None:
        super().__init__()
        self.metric, self.report = metric, report
        self.pruned_at: Optional[int] = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:  # type: ignore[type-arg]
        value = float((logs or {}).get(self.metric, math.nan))
        if self.pruned_at is None and self.report(epoch + 1, value):
            self.pruned_at = epoch + 1
            self.model.stop_training = True
