"""Callbacks that publish the committed epoch history: CSV files, curve plots, MLflow metrics.

They read `EpochRecorder.history` and rewrite their outputs from it, so after a resume the files
hold each epoch exactly once, and MLflow gets each epoch's metrics once (at step = epoch, 1-based).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Sequence

import keras

from flexseg.reporting import plots
from flexseg.training.callbacks.state import EpochRecorder
from flexseg.reporting.tables import write_table


def _is_loss(key: str) -> bool:
    return key.endswith("loss")


def write_history_csv(path: Path, history: Sequence[dict[str, float]], keys: Sequence[str]) -> Path:
    """`epoch,<keys...>` rows (values with 6 significant digits) via temp file + rename."""
    return write_table(path, ["epoch", *keys], [[int(r["epoch"]), *(r.get(k, "") for k in keys)] for r in history])


def history_keys(history: Sequence[dict[str, float]]) -> list[str]:
    """Every metric key of the history (not `epoch`), sorted."""
    return sorted({k for row in history for k in row} - {"epoch"})


class CsvLogger(keras.callbacks.Callback):
    """`train_losses.csv` (keys ending in `loss`) and `train_metrics.csv` (the rest, `lr` included)."""

    def __init__(self, run_dir: Path, recorder: EpochRecorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.files = {"losses": run_dir / "train_losses.csv", "metrics": run_dir / "train_metrics.csv"}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        keys = history_keys(self.recorder.history)
        write_history_csv(self.files["losses"], self.recorder.history, [k for k in keys if _is_loss(k)])
        write_history_csv(self.files["metrics"], self.recorder.history, [k for k in keys if not _is_loss(k)])


class CurvePlotter(keras.callbacks.Callback):
    """`train_losses.png` and `train_metrics.png`: headline metrics (train solid, validation dashed),
    validation scores per class, learning rate (log scale).

    Drawing costs about a second; with short epochs the plots are redrawn only once the time since
    the last drawing is `budget` times what that drawing cost (so they take at most ~1/budget of the
    training time, 1 % by default), and always when training ends.
    """

    def __init__(self, run_dir: Path, recorder: EpochRecorder, class_names: Sequence[str],
                 budget: float = 100.0) -> None:
        super().__init__()
        self.recorder, self.run_dir, self.budget = recorder, run_dir, budget
        self.per_class = {f"{prefix}_{name}" for prefix in ("dice", "iou") for name in class_names}
        self._drawn_at, self._cost, self._drawn_epochs = -math.inf, 0.0, -1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.monotonic() - self._drawn_at >= self.budget * self._cost:
            self.draw()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._drawn_epochs != len(self.recorder.history):
            self.draw()

    def draw(self) -> None:
        """Redraw both plots from the history."""
        start = time.monotonic()
        keys = history_keys(self.recorder.history)
        base = [k for k in keys if not k.startswith("val_") and k != "lr"]
        losses = [k for k in base if _is_loss(k)]
        plots.plot_curves(self.recorder.history, [("loss", [x for k in losses for x in (k, f"val_{k}")])],
                          self.run_dir / "train_losses.png")
        panels = [(k, [k, f"val_{k}"]) for k in base if not _is_loss(k) and k not in self.per_class]
        for prefix in ("dice", "iou"):
            panels.append((f"val_{prefix} per class", sorted(f"val_{k}" for k in self.per_class
                                                             if k.startswith(f"{prefix}_"))))
        panels.append(("lr", ["lr"]))
        plots.plot_curves(self.recorder.history, panels, self.run_dir / "train_metrics.png", log_scale=("lr",))
        self._drawn_at = time.monotonic()
        self._cost, self._drawn_epochs = self._drawn_at - start, len(self.recorder.history)


class MlflowLogger(keras.callbacks.Callback):
    """The MLflow bridge: the epoch's metrics, once, at step = epoch (1-based), after the files of every
    write the recorder started have landed (an epoch `callbacks.last_every` does not commit is logged
    then too; after a kill, such epochs are trained and logged again)."""

    def __init__(self, recorder: EpochRecorder, log_metrics: Callable[[dict[str, float], int], None]) -> None:
        super().__init__()
        self.recorder, self.log_metrics = recorder, log_metrics

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = dict(self.recorder.history[-1])
        self.recorder.after_commit(lambda: self.log_metrics({k: v for k, v in row.items() if k != "epoch"},
                                                            int(row["epoch"])))
