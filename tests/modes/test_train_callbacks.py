"""The callbacks of a training run: config values honoured, switchable, ordered; the epoch record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from conftest import TINY, compose

from flexseg.training.callbacks import (
    BestCheckpoint,
    CsvLogger,
    EpochRecorder,
    MlflowLogger,
    TrainingState,
    monitor_mode,
    read_state,
)
from flexseg.errors import FlexsegError
from flexseg.modes.train import build_callbacks, check_monitor

OFF = ["callbacks.epoch_change_infer=false", "callbacks.epoch_change_tiled=false"]


def _by_type(callbacks: list) -> dict[str, keras.callbacks.Callback]:
    return {type(c).__name__: c for c in callbacks}


def test_reduce_lr_and_early_stopping_take_config_values(tmp_path: Path) -> None:
    cfg = compose(["callbacks.reducer_factor=0.3", "callbacks.reducer_patience=2", "callbacks.min_lr=1e-6",
                   "callbacks.reducer_cooldown=1", "callbacks.patience=7", "callbacks.min_delta=0.01",
                   "callbacks.monitor=val_dice", *OFF])
    cbs = _by_type(build_callbacks(cfg, tmp_path, TrainingState()))
    reducer = cbs["ReduceLROnPlateau"]
    assert (reducer.factor, reducer.patience, reducer.min_lr, reducer.cooldown, reducer.monitor, reducer.mode) == (
        0.3, 2, 1e-6, 1, "val_dice", "max")
    stopper = cbs["EarlyStopping"]
    assert (stopper.patience, stopper.min_delta, stopper.monitor, stopper.mode) == (7, 0.01, "val_dice", "max")
    assert isinstance(cbs["BestCheckpoint"], BestCheckpoint) and cbs["BestCheckpoint"].monitor == "val_dice"
    assert {"CsvLogger", "CurvePlotter", "MlflowLogger", "EpochRecorder"} <= set(cbs)
    assert "EpochInference" not in cbs and "EpochTiledInference" not in cbs


def test_every_callback_can_be_switched_off_and_the_order_holds(tmp_path: Path) -> None:
    off = ["checkpoint", "early_stopping", "reduce_lr", "csv_logs", "plots", "mlflow", "last_checkpoint"]
    cfg = compose([*OFF, *(f"callbacks.{name}=false" for name in off)])
    cbs = build_callbacks(cfg, tmp_path, TrainingState())
    assert [type(c).__name__ for c in cbs] == ["EpochTimer", "SignalStop", "EpochRecorder"]
    assert cbs[2].ckpt_dir is None
    names = [type(c).__name__ for c in build_callbacks(compose(OFF), tmp_path, TrainingState())]
    assert names == ["EpochTimer", "SignalStop", "ReduceLROnPlateau", "BestCheckpoint", "EarlyStopping", "EpochRecorder",
                     "CsvLogger", "CurvePlotter", "MlflowLogger"]


def test_reduce_lr_is_skipped_under_a_schedule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose(["train.lr_schedule=cosine", *OFF])
    assert "ReduceLROnPlateau" not in _by_type(build_callbacks(cfg, tmp_path, TrainingState()))
    assert "callbacks.reduce_lr is ignored" in caplog.text


def test_monitor_typo_fails_naming_valid_values() -> None:
    check_monitor(compose(["callbacks.monitor=val_dice_square"]))
    with pytest.raises(FlexsegError, match="callbacks.monitor='val_dise' is not logged.*val_dice_coef_multiclass"):
        check_monitor(compose(["callbacks.monitor=val_dise"]))


def test_monitor_direction() -> None:
    assert monitor_mode("val_loss") == "min"
    assert monitor_mode("val_dice") == "max"
    assert monitor_mode("val_iou_square") == "max"
    assert monitor_mode("val_dice_loss") == "min"


def test_reduce_lr_honours_factor_patience_and_min_lr(tmp_path: Path) -> None:
    # min_delta 1e9: nothing counts as an improvement after the first epoch, so every epoch waits.
    cfg = compose(["callbacks.reducer_factor=0.5", "callbacks.reducer_patience=1", "callbacks.min_lr=0.003",
                   "callbacks.min_delta=1e9", "callbacks.early_stopping=false", *OFF])
    reducer = _by_type(build_callbacks(cfg, tmp_path, TrainingState()))["ReduceLROnPlateau"]
    reducer.verbose = 0
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rates: list[float] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: rates.append(float(model.optimizer.learning_rate)))
    x = np.ones((4, 2), "float32")
    model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=4, verbose=0, callbacks=[reducer, record])
    assert rates == pytest.approx([0.01, 0.005, 0.003, 0.003])


def test_best_checkpoint_saves_only_on_improvement(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    ckpt = BestCheckpoint(tmp_path / "best.keras", "val_loss")
    recorder = EpochRecorder(TrainingState(), {"best_checkpoint": ckpt}, None)  # best only: no last.keras

    def epoch(index: int, value: float) -> None:
        for callback in (ckpt, recorder):
            callback.set_model(model)
            callback.on_epoch_begin(index)
            callback.on_epoch_end(index, {"val_loss": value})
        recorder.writer.flush()

    epoch(0, 1.0)
    first = (tmp_path / "best.keras").stat().st_mtime_ns
    epoch(1, 2.0)
    assert (tmp_path / "best.keras").stat().st_mtime_ns == first and ckpt.best_epoch == 1
    epoch(2, float("nan"))
    model.layers[0].kernel.assign(np.full((2, 1), 3.0, np.float32))
    epoch(3, 0.5)
    assert ckpt.best_epoch == 4 and ckpt.best == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]  # no temp file left
    reloaded = keras.models.load_model(tmp_path / "best.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(np.ones((1, 2)), verbose=0), model.predict(np.ones((1, 2)), verbose=0))


def _fit_recorded(tmp_path: Path, state: TrainingState, epochs: int, initial_epoch: int = 0) -> tuple:
    """A tiny regression fit with early stopping + reduce-LR snapshotted by an EpochRecorder."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    stopper = keras.callbacks.EarlyStopping(patience=5)
    reducer = keras.callbacks.ReduceLROnPlateau(patience=5)
    recorder = EpochRecorder(state, {"early_stopping": stopper, "reduce_lr": reducer}, tmp_path)
    logged: list[tuple[int, dict]] = []
    cbs = [stopper, reducer, recorder, CsvLogger(tmp_path, recorder),
           MlflowLogger(recorder, lambda metrics, step: logged.append((step, metrics)))]
    x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    model.fit(x, x.sum(1, keepdims=True), validation_data=(x, x.sum(1, keepdims=True)), epochs=epochs,
              initial_epoch=initial_epoch, verbose=0, callbacks=cbs)
    return model, stopper, reducer, logged


def test_epoch_recorder_commits_and_restores_counters(tmp_path: Path) -> None:
    state = TrainingState(run_id="abc")
    model, stopper, reducer, logged = _fit_recorded(tmp_path, state, epochs=3)
    saved = read_state(tmp_path / "state.json")
    assert (saved.epoch, saved.run_id, saved.iterations) == (3, "abc", 3)
    assert [row["epoch"] for row in saved.history] == [1, 2, 3] and "lr" in saved.history[0]
    assert saved.callbacks["early_stopping"]["best"] == stopper.best
    assert [step for step, _ in logged] == [1, 2, 3] and "val_loss" in logged[0][1] and "epoch" not in logged[0][1]
    assert (tmp_path / "last.keras").is_file() and not list(tmp_path.glob(".*tmp*"))
    # a second fit continuing the state: counters restored after Keras reset them, rows appended
    saved.callbacks["early_stopping"]["wait"] = 2
    saved.callbacks["reduce_lr"]["wait"] = 1
    _, stopper2, reducer2, logged2 = _fit_recorded(tmp_path, saved, epochs=3, initial_epoch=3)
    assert (stopper2.wait, reducer2.wait, stopper2.best) == (2, 1, stopper.best)  # no epoch ran
    _, stopper3, _, logged3 = _fit_recorded(tmp_path, saved, epochs=4, initial_epoch=3)
    assert [step for step, _ in logged3] == [4]
    with (tmp_path / "train_losses.csv").open() as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3", "4"]
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 4


def test_epoch_tiled_inference_every_n_epochs_and_after_the_last(tmp_path: Path) -> None:
    from flexseg.training.callbacks import EpochTiledInference

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    logged: list[tuple[str, int, tuple]] = []
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    palette = np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8)
    callback = EpochTiledInference(
        image, image.astype(np.float32) / 255.0, palette, tmp_path, tile_size=24, overlap=8, batch_size=4,
        blend="gaussian", log_image=lambda img, key, step: logged.append((key, step, img.shape)), every=2)
    callback.set_model(model)
    assert callback.predict_labels().shape == (40, 56)  # full size, not the tile size
    for epoch in range(3):
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    assert [(key, step) for key, step, _ in logged] == [("epoch_change_tiled", 2), ("epoch_change_tiled", 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_002.png", "epoch_003.png"]


def test_the_mlflow_step_copy_of_a_large_picture_is_at_most_1024_px_and_the_file_keeps_full_size(tmp_path: Path) -> None:
    from flexseg.training.callbacks import EpochInference

    logged: list[tuple[int, ...]] = []
    palette = np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8)
    callback = EpochInference(np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 8, 8, 2), np.float32), palette,
                              tmp_path, log_image=lambda img, key, step: logged.append(img.shape), baseline=False)
    grid = np.random.default_rng(0).integers(0, 255, (2048, 1536, 3), dtype=np.uint8)
    callback.publish(grid, 1)
    callback.publish(grid[:300, :200], 2)  # small pictures go as they are
    assert logged == [(1024, 768, 3), (300, 200, 3)]
    assert cv2.imread(str(tmp_path / "epoch_001.png")).shape == (2048, 1536, 3)


def test_epoch_tiled_inference_follows_the_weights_of_every_epoch(tmp_path: Path) -> None:
    from flexseg.training.callbacks import EpochTiledInference

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    callback = EpochTiledInference(
        np.zeros((40, 56, 3), np.uint8), np.zeros((40, 56, 3), np.float32),
        np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8), tmp_path, tile_size=24, overlap=8, batch_size=4,
        blend="gaussian")
    callback.set_model(model)
    for favoured in (0, 1, 0):  # "training" moves the bias between epochs; the tile-size copy must follow
        kernel, _ = model.layers[-1].get_weights()
        model.layers[-1].set_weights([kernel, np.asarray([5.0, -5.0] if favoured == 0 else [-5.0, 5.0], np.float32)])
        assert (callback.predict_labels() == favoured).all()


def test_epoch_pictures_start_with_the_untrained_model_at_step_0_only_for_a_new_run(tmp_path: Path) -> None:
    from flexseg.training.callbacks import EpochInference, EpochTiledInference

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    images, palette = np.zeros((2, 16, 16, 3), np.float32), np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8)
    logged: list[tuple[str, int]] = []
    files: list[tuple[str, str]] = []

    def make(out: Path, baseline: bool) -> list[keras.callbacks.Callback]:
        log_image = lambda img, key, step: logged.append((key, step))  # noqa: E731
        log_file = lambda path, folder: files.append((folder, path.name))  # noqa: E731
        return [EpochInference(images, np.zeros((2, 16, 16, 2), np.float32), palette, out / "infer", log_image,
                               log_file, baseline),
                EpochTiledInference(np.zeros((40, 56, 3), np.uint8), np.zeros((40, 56, 3), np.float32), palette,
                                    out / "tiled", 24, 8, 4, "gaussian", log_image, log_file=log_file,
                                    baseline=baseline)]

    def fit(callbacks: list[keras.callbacks.Callback]) -> None:
        for cb in callbacks:
            cb.set_model(model)
            cb.on_train_begin()
            cb.on_epoch_end(0)
            cb.on_train_end()

    fit(make(tmp_path / "new", baseline=True))
    assert logged == [("epoch_change_infer", 0), ("epoch_change_infer", 1),
                      ("epoch_change_tiled", 0), ("epoch_change_tiled", 1)]
    assert files == [("epoch_change_infer", "epoch_000.png"), ("epoch_change_infer", "epoch_001.png"),
                     ("epoch_change_tiled", "epoch_000.png"), ("epoch_change_tiled", "epoch_001.png")]
    assert sorted(p.name for p in (tmp_path / "new" / "infer").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    logged.clear()
    fit(make(tmp_path / "resumed", baseline=False))  # a resumed run has its baseline already
    fit(make(tmp_path / "new", baseline=True))  # ...and so does a run dir that holds epoch_000.png
    assert 0 not in {step for _, step in logged}


def test_a_resumed_training_does_not_picture_the_baseline_again(tmp_path: Path) -> None:
    import cv2

    large = tmp_path / "large.png"
    cv2.imwrite(str(large), np.zeros((64, 64, 3), np.uint8))
    cfg = compose([*TINY, f"dataset.root={tmp_path}/synthetic", "callbacks.epoch_change_infer=false"])
    new, resumed = (_by_type(build_callbacks(cfg, tmp_path, state, tiled_image=large))["EpochTiledInference"]
                    for state in (TrainingState(), TrainingState(epoch=2)))
    assert new.baseline and not resumed.baseline
    assert new.log_file is not None and new.log_image is not None  # the PNG files go to MLflow too


def test_epoch_change_infer_says_when_it_falls_back_to_the_validation_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from flexseg.data.discovery import build_split
    from flexseg.modes.common import prepare_dataset
    from flexseg.modes.train import epoch_infer_split

    cfg = compose([*TINY, f"dataset.root={tmp_path}/synthetic"])
    prepare_dataset(cfg.dataset)
    valid = build_split(cfg.dataset, "valid")
    assert epoch_infer_split(cfg, valid).name == "test" and not caplog.records
    shutil.rmtree(tmp_path / "synthetic" / "test")
    with caplog.at_level("WARNING", logger="flexseg.modes.train"):
        assert epoch_infer_split(cfg, valid) is valid
    assert "no usable test split" in caplog.text and "validation" in caplog.text


def test_epoch_pictures_keep_to_their_share_of_training_time_and_always_show_the_last_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pictures costing 3 s after 10 s epochs, at a 5 % share: epoch 1 is pictured, then only once the
    training time has grown to 20x the 3 s spent; the last epoch is pictured at the end whatever the budget."""
    from flexseg.training.callbacks import EpochInference, PictureBudget
    from flexseg.training.callbacks import inference as module

    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    steps: list[int] = []

    class Slow(EpochInference):
        def picture(self, epoch: int) -> None:
            clock[0] += 3.0
            steps.append(epoch + 1)

    callback = Slow(np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 16, 16, 2), np.float32),
                    np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8), tmp_path, baseline=False,
                    budget=PictureBudget(0.05))
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(10):
        clock[0] += 10.0
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    # epoch 1 at t=10 (spent 0); next when 3 <= 0.05 t, t >= 60: epoch 6 (t=63); then 6 <= 0.05 t: t >= 120,
    # past the 10 epochs (t=106): the last epoch comes from on_train_end.
    assert steps == [1, 6, 10]
    # A second kind of picture sharing that spent budget still shows the first epoch it sees.
    steps.clear()
    shared = PictureBudget(0.05)
    first, second = (Slow(np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 16, 16, 2), np.float32),
                          np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8), tmp_path, baseline=False, budget=shared)
                     for _ in range(2))
    for callback in (first, second):
        callback.set_model(model)
        callback.on_train_begin()
    clock[0] += 10.0
    first.on_epoch_end(0)
    second.on_epoch_end(0)
    clock[0] += 10.0
    first.on_epoch_end(1)
    second.on_epoch_end(1)
    assert steps == [1, 1] and shared.spent == 6.0  # epoch 2: 6 s spent > 5 % of 26 s, neither
    unlimited = Slow(np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 16, 16, 2), np.float32),
                     np.asarray([[0, 0, 0], [255, 0, 0]], np.uint8), tmp_path, baseline=False)
    steps.clear()
    unlimited.set_model(model)
    unlimited.on_train_begin()
    for epoch in range(3):
        unlimited.on_epoch_end(epoch)
    unlimited.on_train_end()
    assert steps == [1, 2, 3]


def test_pictures_share_out_of_range_is_named(tmp_path: Path) -> None:
    cfg = compose(["callbacks.pictures_share=1.5", *TINY])
    with pytest.raises(FlexsegError, match=r"callbacks.pictures_share=1.5"):
        build_callbacks(cfg, tmp_path, TrainingState())
