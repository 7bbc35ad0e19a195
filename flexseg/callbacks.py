"""Keras callbacks of a training run: CSV logs + MLflow metrics, best checkpoint, epoch-change inference."""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from flexseg import tracking, viz
from flexseg.data.pipeline import labels_from_target

log = logging.getLogger(__name__)


def monitor_mode(monitor: str) -> str:
    """'max' for score-like metrics (dice, iou, accuracy), else 'min' (losses)."""
    return "max" if any(k in monitor for k in ("dice", "iou", "acc")) else "min"


class EpochLogger(keras.callbacks.Callback):
    """After every epoch: append `train_losses.csv` / `train_metrics.csv`, log metrics + lr to MLflow.

    MLflow steps are 1-based epoch numbers, logged once per epoch.
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.files = {"losses": run_dir / "train_losses.csv", "metrics": run_dir / "train_metrics.csv"}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        logs.pop("learning_rate", None)  # Keras adds it when an LR callback runs; we log it as `lr` always
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        for kind, path in self.files.items():
            keys = sorted(k for k in logs if (k.endswith("loss") == (kind == "losses")))
            new = not path.exists()
            with path.open("a", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(["epoch", *keys])
                writer.writerow([epoch + 1, *(f"{float(logs[k]):.6g}" for k in keys)])
        tracking.log_metrics(logs, step=epoch + 1)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model as `.keras` when `monitor` improves: temp file, then atomic rename."""

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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.stem}.tmp.keras")
            self.model.save(tmp)
            os.replace(tmp, self.path)
            log.info("epoch %d: %s improved to %.4f, saved %s", epoch + 1, self.monitor, value, self.path)


class EpochInference(keras.callbacks.Callback):
    """After every epoch, predict a few fixed images and save/log an image | truth | prediction grid."""

    def __init__(
        self, images: np.ndarray, targets: np.ndarray, palette: np.ndarray, out_dir: Path,
        log_image: Callable[[np.ndarray, str, int], None] = tracking.log_image,
    ) -> None:
        """Args:
        images: (N, H, W, C) float32 in [0, 1].
        targets: (N, H, W, K|1) model targets.
        palette: (K, 3) uint8 class colours.
        out_dir: folder for `epoch_NNN.png`.
        """
        super().__init__()
        self.images, self.palette, self.out_dir, self.log_image = images, palette, out_dir, log_image
        self.truth_panels = [viz.colorize(t, palette) for t in labels_from_target(targets)]
        self.image_panels = [viz.to_uint8_rgb(img) for img in images]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pred = labels_from_target(self.model.predict(self.images, verbose=0))
        rows = [
            [img, truth, viz.colorize(p, self.palette)]
            for img, truth, p in zip(self.image_panels, self.truth_panels, pred)
        ]
        grid = viz.build_grid(rows, ["image", "truth", f"prediction (epoch {epoch + 1})"])
        viz.write_rgb(self.out_dir / f"epoch_{epoch + 1:03d}.png", grid)
        self.log_image(grid, "epoch_change_infer", epoch + 1)
