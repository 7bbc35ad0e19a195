"""The curve plots cost at most ~1/budget of the training time, and are complete when training ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexseg.training.callbacks import publish
from flexseg.training.callbacks.publish import CurvePlotter
from flexseg.training.callbacks.state import EpochRecorder, TrainingState


def test_plots_are_throttled_by_their_own_cost_and_drawn_at_the_end(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(publish.time, "monotonic", lambda: now[0])
    drawn: list[int] = []

    def fake_plot(history, panels, path, log_scale=()):  # type: ignore[no-untyped-def]
        now[0] += 0.5  # each figure takes half a second
        drawn.append(len(history))

    monkeypatch.setattr(publish.plots, "plot_curves", fake_plot)
    recorder = EpochRecorder(TrainingState(), {}, None)
    plotter = CurvePlotter(tmp_path, recorder, ["background", "cell"], budget=20.0)
    for epoch in range(10):  # 2 s epochs: a drawing (1 s) may happen every 20 s
        now[0] += 2.0
        recorder.state.history.append({"epoch": epoch + 1, "loss": 1.0 / (epoch + 1)})
        plotter.on_epoch_end(epoch)
    plotter.on_train_end()
    epochs_drawn = sorted(set(drawn))
    assert epochs_drawn[0] == 1 and epochs_drawn[-1] == 10, "the first epoch and the final history are drawn"
    assert len(epochs_drawn) < 5, f"drawn after epochs {epochs_drawn}: not throttled"
