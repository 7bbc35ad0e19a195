"""The callbacks a training run gets honour every configured value (the reference silently ignored typos)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from conftest import compose

from flexseg.callbacks import BestCheckpoint, EpochLogger, monitor_mode
from flexseg.modes.train import _callbacks


def test_reduce_lr_and_early_stopping_take_config_values(tmp_path: Path) -> None:
    cfg = compose(["callbacks.reducer_factor=0.3", "callbacks.reducer_patience=2", "callbacks.min_lr=1e-6",
                   "callbacks.patience=7", "callbacks.epoch_change_infer=false"])
    cbs = {type(c).__name__: c for c in _callbacks(cfg, tmp_path, infer_ds=None)}
    reducer = cbs["ReduceLROnPlateau"]
    assert (reducer.factor, reducer.patience, reducer.min_lr, reducer.monitor) == (0.3, 2, 1e-6, "val_loss")
    assert cbs["EarlyStopping"].patience == 7
    assert "EpochInference" not in cbs and isinstance(cbs["EpochLogger"], EpochLogger)
    assert isinstance(cbs["BestCheckpoint"], BestCheckpoint)


def test_monitor_direction() -> None:
    assert monitor_mode("val_loss") == "min"
    assert monitor_mode("val_dice") == "max"


def test_best_checkpoint_saves_only_on_improvement(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    ckpt = BestCheckpoint(tmp_path / "best.keras", "val_loss")
    ckpt.set_model(model)
    ckpt.on_epoch_end(0, {"val_loss": 1.0})
    first = (tmp_path / "best.keras").stat().st_mtime_ns
    ckpt.on_epoch_end(1, {"val_loss": 2.0})
    assert (tmp_path / "best.keras").stat().st_mtime_ns == first and ckpt.best_epoch == 1
    ckpt.on_epoch_end(2, {"val_loss": float("nan")})
    ckpt.on_epoch_end(3, {"val_loss": 0.5})
    assert ckpt.best_epoch == 4 and ckpt.best == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]  # no temp file left
    reloaded = keras.models.load_model(tmp_path / "best.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(np.ones((1, 2)), verbose=0), model.predict(np.ones((1, 2)), verbose=0))
