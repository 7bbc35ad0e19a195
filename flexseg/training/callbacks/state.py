"""The epoch record of a training run and what a resumed run needs: last.keras + state.json.

After every epoch `EpochRecorder` appends the epoch's logs to the history, then (when given a
checkpoint folder, every `callbacks.last_every`) commits the epoch (`commit_files`), on a
background thread from an in-memory snapshot of the model (`flexseg.training.callbacks.writer`):
the model (+ optimizer state) goes to a file of its own, `.last_epoch_NNNN.keras`; `best.keras` is
linked to it when the epoch improved the monitored value; then `state.json` (epoch count, history,
learning rate, the counters of early stopping / ReduceLROnPlateau / best checkpoint, MLflow run id,
and the name of that model file) replaces the previous one; only then does `last.keras` become a
hard link to the new file and the previous epoch's file go. `state.json` is the commit point:
whenever a run is killed, the state on disk names a complete model file of the same epoch, so it
resumes from the last committed epoch with that epoch's weights. MLflow gets an epoch's metrics
after its files landed (`EpochRecorder.after_commit`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np

from flexseg import stopping, storage
from flexseg.config.validation import parse_every
from flexseg.training.callbacks.checkpoint import save_model_atomic
from flexseg.training.callbacks.writer import CheckpointWriter, ModelSnapshot, link_or_copy, write_snapshot
from flexseg.training.keras_file import CheckpointProcess
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LAST_CHECKPOINT = "last.keras"
# Attributes that carry a callback's progress from one epoch to the next, by the role name that
# train.py gives the callback. Keras resets them in on_train_begin; the recorder restores them.
STATEFUL_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "reduce_lr": ("wait", "cooldown_counter", "best"),
    "best_checkpoint": ("best", "best_epoch"),
}


@dataclass
class TrainingState:
    """Everything besides weights and optimizer variables that a resumed training needs.

    Attributes:
        epoch: Epochs completed (the next `fit` starts with `initial_epoch=epoch`).
        run_id: MLflow run the training logs into.
        lr: Learning rate for the next epoch; None when a schedule sets it.
        iterations: Optimizer steps taken, to check that `last.keras` belongs to this state.
        stopped_early: Early stopping ended the training.
        finished: The training run completed (all its outputs logged).
        history: One dict per completed epoch: `epoch` (1-based), Keras logs, `lr`.
        callbacks: Role name -> stateful attributes (see `STATEFUL_ATTRIBUTES`).
        checkpoint: File name (in the checkpoint folder) of the model committed with this state;
            None in states written before it was recorded (then `last.keras`).
    """

    epoch: int = 0
    run_id: Optional[str] = None
    lr: Optional[float] = None
    iterations: int = 0
    stopped_early: bool = False
    finished: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    version: int = 1


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, for JSON."""
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def write_state(path: Path, state: TrainingState) -> Path:
    """Write `state` as JSON via temp file + rename (NaN/Infinity kept, as Python's json does).

    Raises:
        FlexsegError: The write failed (a full disk: `flexseg.storage.write_error`); the previous state stays.
    """
    text = json.dumps(dataclasses.asdict(state), indent=1, default=_plain)
    with storage.atomic_write(path, storage.CHECKPOINT_HINT) as tmp:
        tmp.write_text(text)
    return path


def read_state(path: Path) -> TrainingState:
    """Read a `state.json` written by `write_state`.

    Raises:
        FlexsegError: The file is missing, not JSON, or not a flexseg training state.
    """
    try:
        data = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(TrainingState)}
        return TrainingState(**{k: v for k, v in data.items() if k in names})
    except (OSError, ValueError, TypeError) as err:
        raise FlexsegError(f"Cannot read the training state '{path}': {err}. Resume another run or start anew "
                           "(train.resume=false).") from err


def current_lr(model: keras.Model) -> float:
    """The optimizer's learning rate now (a schedule is evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def lr_is_settable(model: keras.Model) -> bool:
    """False when a `LearningRateSchedule` drives the optimizer (its rate cannot be assigned)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # LossScaleOptimizer
    return not isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


def commit_files(source: ModelSnapshot | keras.Model, ckpt_dir: Path, state: TrainingState,
                 best: Optional[Path] = None, process: Optional[CheckpointProcess] = None) -> Path:
    """Write the model of `state.epoch` and then `state.json`, so the pair on disk always matches.

    Order: `.last_epoch_NNNN.keras` (temp file + rename) -> `best` (when given) linked to it ->
    `state.json` naming it (the commit) -> `last.keras` linked to it -> older epoch files removed.
    Runs on the training thread or on `CheckpointWriter`'s (then `state` is a copy).

    Args:
        source: A snapshot of the model (`ModelSnapshot.capture`) or the model itself.
        ckpt_dir: The checkpoint folder.
        state: The state to commit; its `checkpoint` is set to the file's name.
        best: The best checkpoint's path when this epoch improved it.
        process: The writer process that serialises a snapshot (None: this one).

    Returns:
        The committed model file.
    """
    name = f".last_epoch_{state.epoch:04d}.keras"
    path = ckpt_dir / name
    if isinstance(source, ModelSnapshot):
        write_snapshot(source, path, process)
    else:
        save_model_atomic(source, path)
    if best is not None:  # the same bytes: link, not a second serialisation
        link_or_copy(path, best)
    state.checkpoint = name
    write_state(ckpt_dir / STATE_FILE, state)
    link_or_copy(path, ckpt_dir / LAST_CHECKPOINT)
    for old in ckpt_dir.glob(".last_epoch_*.keras"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def commit_epoch(model: keras.Model, ckpt_dir: Path, state: TrainingState) -> Path:
    """`commit_files` of the model now, on this thread."""
    return commit_files(ModelSnapshot.capture(model) or model, ckpt_dir, state)


class EpochRecorder(keras.callbacks.Callback):
    """Keep the per-epoch history; commit `last.keras` + `state.json` (every `last_every`) and write
    `best.keras` when the best checkpoint improved, both in the background.

    Place it after the callbacks it snapshots (early stopping, ReduceLROnPlateau, best
    checkpoint) and before the ones that publish the history. At each epoch end the model is
    snapshotted in memory and `CheckpointWriter` writes the files while the next epoch trains; the
    last epoch is always committed, and every write is finished when `fit` returns. Publishers that
    must only see committed epochs (MLflow) go through `after_commit`.

    Args:
        state: The state to continue (a fresh one for a new run); updated in place.
        stateful: Role name (a key of `STATEFUL_ATTRIBUTES`) -> callback instance.
        ckpt_dir: Folder for `last.keras` and `state.json`; None records in memory only.
        log_lr: Put the epoch's learning rate into the history as `lr`.
        time_limit: The `train.time_limit` callback: a training it ends is not "stopped early" (nor
            one a signal ends, `flexseg.stopping`).
        last_every: `callbacks.last_every`: commit every N-th epoch ("5") or after a time ("10m").
        background: Write files on the writer thread (False: on the training thread).
    """

    def __init__(self, state: TrainingState, stateful: dict[str, keras.callbacks.Callback],
                 ckpt_dir: Optional[Path], log_lr: bool = True, time_limit: Optional[Any] = None,
                 last_every: str = "1", background: bool = True) -> None:
        super().__init__()
        self.state, self.stateful, self.ckpt_dir, self.log_lr = state, stateful, ckpt_dir, log_lr
        self.time_limit, self.background = time_limit, background
        self.every_epochs, self.every_seconds = parse_every(last_every)
        self.writer = CheckpointWriter()
        self._epoch_lr = float("nan")
        self._committed, self._commit_clock = state.epoch, time.monotonic()

    @property
    def history(self) -> list[dict[str, float]]:
        return self.state.history

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Restore the snapshotted callbacks and the learning rate (they reset themselves first)."""
        self._committed, self._commit_clock = self.state.epoch, time.monotonic()
        for role, values in self.state.callbacks.items():
            callback = self.stateful.get(role)
            if callback is None:
                continue
            if values.get("monitor", callback.monitor) != callback.monitor:
                log.warning("%s starts afresh: it monitored %s before the resume, %s now", role, values["monitor"],
                            callback.monitor)
                continue
            for attr in STATEFUL_ATTRIBUTES[role]:
                if attr in values:
                    setattr(callback, attr, values[attr])
        if self.state.lr is not None and lr_is_settable(self.model):
            self.model.optimizer.learning_rate = self.state.lr

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_lr = current_lr(self.model)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.writer.poll()  # publishes what the writer committed meanwhile; raises a failed write

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row: dict[str, float] = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items() if not k.startswith("learning_rate")})
        if self.log_lr:
            row["lr"] = self._epoch_lr
        s = self.state
        s.history.append(row)
        s.epoch = epoch + 1
        s.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        s.lr = current_lr(self.model) if lr_is_settable(self.model) else None
        timed_out = self.time_limit is not None and self.time_limit.triggered or stopping.requested() is not None
        s.stopped_early = bool(getattr(self.model, "stop_training", False)) and not timed_out
        s.callbacks = {
            role: {"monitor": cb.monitor,
                   **{a: _plain(getattr(cb, a)) for a in STATEFUL_ATTRIBUTES[role] if hasattr(cb, a)}}
            for role, cb in self.stateful.items()
        }
        best = self.stateful.get("best_checkpoint")
        best_path = best.path if best is not None and getattr(best, "improved", False) else None
        commit = self.ckpt_dir is not None and (s.stopped_early or self._due())
        if commit or best_path is not None:
            self._write(commit, best_path)

    def _due(self) -> bool:
        """The `last_every` interval has passed since the last commit."""
        if self.every_epochs:
            return self.state.epoch - self._committed >= self.every_epochs
        return time.monotonic() - self._commit_clock >= self.every_seconds

    def _write(self, commit: bool, best: Optional[Path]) -> None:
        """Snapshot the model now; commit it (and/or write `best`) on the writer thread."""
        source = ModelSnapshot.capture(self.model)
        process = self.writer.process if self.background else None
        if source is None:  # no snapshot possible: write the live model now
            self.writer.flush()
            source = self.model
        if commit:
            assert self.ckpt_dir is not None
            self._committed, self._commit_clock = self.state.epoch, time.monotonic()
            self.state.checkpoint = f".last_epoch_{self.state.epoch:04d}.keras"
            state, ckpt_dir = copy.deepcopy(self.state), self.ckpt_dir
            work = lambda: commit_files(source, ckpt_dir, state, best, process)  # noqa: E731
        elif isinstance(source, ModelSnapshot):
            work = lambda: write_snapshot(source, best, process)  # type: ignore[arg-type]  # noqa: E731
        else:
            work = lambda: save_model_atomic(source, best)  # type: ignore[arg-type]  # noqa: E731
        if self.background and isinstance(source, ModelSnapshot):
            self.writer.submit(work)
        else:
            work()
        if best is not None:
            log.info("epoch %d: %s improved to %.4f; writing %s", self.state.epoch, self.stateful["best_checkpoint"]
                     .monitor, self.stateful["best_checkpoint"].best, best)

    def after_commit(self, publish: Callable[[], None]) -> None:
        """Run `publish` on this thread once every file write submitted so far has finished."""
        self.writer.after(publish)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Commit the last epoch when `last_every` skipped it; wait for every write."""
        if self.ckpt_dir is not None and self._committed != self.state.epoch and self.state.history:
            self._write(True, None)
        self.writer.close()

    def mark_finished(self) -> None:
        """Record that the run completed; written to `state.json` when checkpointing."""
        self.writer.flush()
        self.state.finished = True
        if self.ckpt_dir is not None:
            write_state(self.ckpt_dir / STATE_FILE, self.state)
