"""Best checkpoint by a monitored value; atomic `.keras` writes shared with the epoch recorder."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras

from flexseg import storage
from flexseg.sweep.objective import is_score

log = logging.getLogger(__name__)


def monitor_mode(monitor: str) -> str:
    """'max' for score-like metrics (dice, iou, accuracy, sensitivity, ...), else 'min' (losses)."""
    return "max" if is_score(monitor) else "min"


def save_model_atomic(model: keras.Model, path: Path) -> Path:
    """Save `model` (with optimizer state when compiled) as `.keras`: temp file, then rename.

    A reader (or a process killed mid-write) never sees a half-written file at `path`; a failed write
    (a full disk) leaves the previous file and raises `flexseg.storage.write_error`.
    """
    with storage.atomic_write(path, storage.CHECKPOINT_HINT) as tmp:
        model.save(tmp)
    return path


class BestCheckpoint(keras.callbacks.Callback):
    """Track the best value of `monitor`; `EpochRecorder` writes `path` in the epochs that improved it.

    The recorder links `best.keras` to the epoch's committed `last` file (one serialisation for
    both) or writes it from the epoch's snapshot, in the background. `best` and `best_epoch`
    (1-based) are state that a resumed training restores; `improved` says whether this epoch improved.
    """

    def __init__(self, path: Path, monitor: str = "val_loss") -> None:
        super().__init__()
        self.path, self.monitor = path, monitor
        self.mode_max = monitor_mode(monitor) == "max"
        self.best = -math.inf if self.mode_max else math.inf
        self.best_epoch = 0
        self.improved = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        self.improved = value is not None and not math.isnan(value) and (
            (value > self.best) if self.mode_max else (value < self.best))
        if self.improved:
            self.best, self.best_epoch = float(value), epoch + 1
