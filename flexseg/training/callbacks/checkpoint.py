"""Best checkpoint by a monitored value; atomic `.keras` writes shared with the epoch recorder."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import keras

from flexseg.sweep.objective import is_score

log = logging.getLogger(__name__)


def monitor_mode(monitor: str) -> str:
    """'max' for score-like metrics (dice, iou, accuracy, sensitivity, ...), else 'min' (losses)."""
    return "max" if is_score(monitor) else "min"


def save_model_atomic(model: keras.Model, path: Path) -> Path:
    """Save `model` (with optimizer state when compiled) as `.keras`: temp file, then rename.

    A reader (or a process killed mid-write) never sees a half-written file at `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model as `.keras` when `monitor` improves (temp file, then atomic rename).

    `best` and `best_epoch` (1-based) are state that a resumed training restores.
    """

    def __init__(self, path: Path, monitor: str = "val_loss") -> None:
        super().__init__()
        self.path, self.monitor = path, monitor
        self.mode_max = monitor_mode(monitor) == "max"
        self.best = -math.inf if self.mode_max else math.inf
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(value):
            return
        if (value > self.best) if self.mode_max else (value < self.best):
            self.best, self.best_epoch = float(value), epoch + 1
            save_model_atomic(self.model, self.path)
            log.info("epoch %d: %s improved to %.4f, saved %s", epoch + 1, self.monitor, value, self.path)
