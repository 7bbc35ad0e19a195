"""Background checkpoint writes: the file is what `model.save` writes, of the snapshotted epoch;
`callbacks.last_every` spaces commits; `best.keras` shares the committed file; `train.time_limit`."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg.errors import FlexsegError
from flexseg.training.callbacks import BestCheckpoint, EpochRecorder, TrainingState, read_state
from flexseg.training.callbacks.timing import EpochTimer, TimeLimit
from flexseg.training.callbacks.writer import CheckpointWriter, ModelSnapshot, write_snapshot


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    return model


def _data(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, 8, 8, 3), dtype=np.float32)
    y = keras.utils.to_categorical((x[..., 0] > 0.5).astype(int), 2)
    return x, y


def test_a_snapshot_file_loads_as_the_model_was_when_snapshotted(tmp_path: Path) -> None:
    model = _model()
    x, y = _data()
    model.train_on_batch(x, y)
    snapshot = ModelSnapshot.capture(model)
    assert snapshot is not None
    weights = [w.copy() for w in model.get_weights()]
    optimizer = [v.numpy().copy() for v in model.optimizer.variables]
    model.train_on_batch(x, y)  # training goes on after the snapshot
    write_snapshot(snapshot, tmp_path / "snap.keras")
    loaded = keras.saving.load_model(tmp_path / "snap.keras", safe_mode=True)
    for got, want in zip(loaded.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(loaded.optimizer.variables, optimizer):
        np.testing.assert_array_equal(got.numpy(), want)
    assert int(loaded.optimizer.iterations.numpy()) == 1
    assert not list(tmp_path.glob(".*tmp*")), "no temp file is left behind"


def _fit(tmp_path: Path, epochs: int, last_every: str, monitor_values: list[float] | None = None,
         state: TrainingState | None = None) -> tuple[EpochRecorder, list[keras.callbacks.Callback]]:
    model = _model()
    x, y = _data()
    best = BestCheckpoint(tmp_path / "best.keras", "val_loss")
    recorder = EpochRecorder(state or TrainingState(), {"best_checkpoint": best}, tmp_path, last_every=last_every)
    model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=4, verbose=0, shuffle=False,
              callbacks=[best, recorder])
    return recorder, [best]


def test_last_every_commits_every_nth_epoch_and_always_the_last(tmp_path: Path, monkeypatch) -> None:
    from flexseg.training.callbacks import state as state_module

    commits: list[int] = []
    real = state_module.commit_files

    def record(source, ckpt_dir, state, best=None, process=None):  # type: ignore[no-untyped-def]
        commits.append(state.epoch)
        return real(source, ckpt_dir, state, best, process)

    monkeypatch.setattr(state_module, "commit_files", record)
    recorder, _ = _fit(tmp_path, 5, "2")
    state = read_state(tmp_path / "state.json")
    assert state.epoch == 5, "the last epoch is committed even when the interval skips it"
    assert state.checkpoint == ".last_epoch_0005.keras" and (tmp_path / state.checkpoint).is_file()
    assert os.path.samefile(tmp_path / "last.keras", tmp_path / state.checkpoint)
    assert len(list(tmp_path.glob(".last_epoch_*.keras"))) == 1
    assert commits == [2, 4, 5]


def test_best_is_the_committed_file_not_a_second_write(tmp_path: Path) -> None:
    _fit(tmp_path, 3, "1")
    state = read_state(tmp_path / "state.json")
    best_epoch = state.callbacks["best_checkpoint"]["best_epoch"]
    assert best_epoch >= 1
    if best_epoch == 3:
        assert os.path.samefile(tmp_path / "best.keras", tmp_path / "last.keras")
    loaded = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    assert loaded.count_params() > 0


def test_a_time_interval_commits_only_the_last_epoch_of_a_short_run(tmp_path: Path) -> None:
    recorder, _ = _fit(tmp_path, 3, "1h")
    assert recorder.every_seconds == 3600.0
    assert read_state(tmp_path / "state.json").epoch == 3


def test_after_commit_runs_once_the_write_landed(tmp_path: Path) -> None:
    writer = CheckpointWriter()
    order: list[str] = []
    writer.submit(lambda: order.append("write"))
    writer.after(lambda: order.append("publish"))
    writer.flush()
    assert order == ["write", "publish"]
    writer.after(lambda: order.append("now"))
    assert order[-1] == "now", "with nothing pending, publishing is immediate"


def test_a_failed_write_stops_training_with_a_clear_error() -> None:
    writer = CheckpointWriter()

    def fail() -> None:
        raise OSError(28, "No space left on device")

    writer.submit(fail)
    with pytest.raises(FlexsegError, match="No space left on device.*train.resume=auto"):
        writer.flush()


def test_time_limit_ends_the_epoch_in_progress_and_is_not_an_early_stop(tmp_path: Path) -> None:
    ticks = iter(range(1000))
    limit = TimeLimit(2.5, clock=lambda: float(next(ticks)))  # one "second" per clock read
    model = _model()
    x, y = _data(16)
    recorder = EpochRecorder(TrainingState(), {}, tmp_path, time_limit=limit)
    model.fit(x, y, validation_data=(x, y), epochs=10, batch_size=4, verbose=0, callbacks=[limit, recorder])
    state = read_state(tmp_path / "state.json")
    assert limit.triggered and state.epoch == 1, "the budget ran out in the first epoch"
    assert not state.stopped_early, "train.resume may continue a run its time limit ended"
    assert "val_loss" in state.history[-1], "the shortened epoch was validated"


def test_epoch_timer_splits_wall_time_into_steps_validation_and_the_rest() -> None:
    now = [0.0]
    timer = EpochTimer(clock=lambda: now[0])
    timer.on_epoch_begin(0)
    for _ in range(3):
        timer.on_train_batch_begin(0)
        now[0] += 2.0
        timer.on_train_batch_end(0)
    timer.on_test_begin()
    now[0] += 1.0
    timer.on_test_end()
    now[0] += 0.5  # epoch-end callbacks
    timer.on_train_end()
    assert timer.epochs == [(1, 7.5, 6.0, 1.0)]
