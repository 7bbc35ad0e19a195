"""A training killed at any point of an epoch's commit resumes that epoch's weights with its state."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg.training.callbacks import state as state_module
from flexseg.training.callbacks.state import EpochRecorder, TrainingState, read_state
from flexseg.training.resume import find_resume_point, restore_model


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    return model


def test_a_kill_between_model_and_state_resumes_the_committed_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.ones((8, 2))
    ckpt = tmp_path / "checkpoints"
    model = _model()
    state = TrainingState()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[EpochRecorder(state, {}, ckpt)])
    committed = [w.copy() for w in model.get_weights()]

    def killed(path: Path, _state: TrainingState) -> Path:  # dies after the model file, before state.json
        raise KeyboardInterrupt("kill")

    monkeypatch.setattr(state_module, "write_state", killed)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, initial_epoch=1, batch_size=4, verbose=0, callbacks=[EpochRecorder(state, {}, ckpt)])
    monkeypatch.undo()
    assert not np.allclose(model.get_weights()[0], committed[0])  # epoch 2 did change the weights

    point = find_resume_point("true", str(tmp_path), "0", "x")
    assert point is not None and point.state.epoch == 1
    fresh = _model()
    restore_model(fresh, point)
    for restored, expected in zip(fresh.get_weights(), committed):
        np.testing.assert_array_equal(restored, expected)
    assert int(fresh.optimizer.iterations.numpy()) == point.state.iterations == 2


def test_each_commit_keeps_one_model_file_and_last_keras_is_it(tmp_path: Path) -> None:
    x, y = np.zeros((4, 4)), np.zeros((4, 2))
    ckpt = tmp_path / "checkpoints"
    state = TrainingState()
    _model().fit(x, y, epochs=3, batch_size=4, verbose=0, callbacks=[EpochRecorder(state, {}, ckpt)])
    assert read_state(ckpt / "state.json").checkpoint == ".last_epoch_0003.keras"
    assert sorted(p.name for p in ckpt.glob("*.keras")) == [".last_epoch_0003.keras", "last.keras"]
    assert (ckpt / "last.keras").read_bytes() == (ckpt / ".last_epoch_0003.keras").read_bytes()
    keras.models.load_model(ckpt / "last.keras", compile=False, safe_mode=True)
