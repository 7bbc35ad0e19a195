"""SIGINT / SIGTERM: training commits the current epoch, its MLflow run is KILLED with the resume command,
`train.resume=auto` continues it; eval / infer / tiled stop after the current file, whose outputs are complete."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import keras
import pytest
from conftest import REPO, TINY, compose, run_cli, seed_store
from tiny_model import build_model_data, mode_overrides
from omegaconf import OmegaConf

from flexseg import stopping
from flexseg.context import RunContext
from flexseg.modes import evaluate, infer, tiled, train
from flexseg.training.callbacks import read_state
from flexseg.training.callbacks.timing import SignalStop


@pytest.fixture(autouse=True)
def _no_request() -> Iterator[None]:
    stopping.reset()
    yield
    stopping.reset()


def _store(tmp_path: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic",
            "tracking.experiment=signals", *TINY, "callbacks=minimal"]


def _runs(tmp_path: Path):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return client, client.search_runs([client.get_experiment_by_name("signals").experiment_id])


def _train(tmp_path: Path, name: str, overrides: list[str]) -> dict[str, float]:
    cfg = compose(overrides)
    return train.run(cfg, RunContext(tmp_path / name, overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))


def _no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers


def test_sigterm_during_a_step_commits_that_epoch_and_auto_resume_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [*_store(tmp_path), "train.epochs=4", "callbacks.early_stopping=false"]

    def signal_in_epoch_3(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        if epoch == 2:
            stopping.request(signal.SIGTERM)  # as the handler does while epoch 3's first step runs

    monkeypatch.setattr(SignalStop, "on_epoch_begin", signal_in_epoch_3, raising=False)
    with pytest.raises(stopping.Interrupted) as info:
        _train(tmp_path, "first", overrides)
    assert info.value.exit_code == 143
    ckpt = tmp_path / "first" / "checkpoints"
    state = read_state(ckpt / "state.json")
    # epoch 3 ended after 1 of its 2 steps, was validated and committed; not "stopped early"
    assert (state.epoch, state.finished, state.stopped_early) == (3, False, False)
    assert state.iterations == 5 and len(state.history) == 3
    for name in ("last.keras", "best.keras"):
        keras.models.load_model(ckpt / name, compile=False)
    assert not (ckpt / "train.lock").exists()
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    tags = runs[0].data.tags
    assert tags["flexseg.stopped_by"] == "SIGTERM"
    assert tags["flexseg.resume"].startswith("flexseg ") and tags["flexseg.resume"].endswith(" train.resume=auto")
    assert "dataset.root=" in tags["flexseg.resume"]

    monkeypatch.undo()
    stopping.reset()
    resumed = shlex.split(tags["flexseg.resume"])[1:]
    assert _train(tmp_path, "second", resumed)["epochs"] == 4
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "val_loss")) == [1, 2, 3, 4]
    assert read_state(ckpt / "state.json").finished


@pytest.fixture(scope="module")
def model_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_data(tmp_path_factory.mktemp("signals"))


def _mode(data: Path, tmp_path: Path, mode: str, *more: str) -> list[str]:
    return mode_overrides(data, tmp_path, mode, "tracking.experiment=signals", *more)


@pytest.mark.parametrize("mode", ["infer", "tiled"])
def test_infer_and_tiled_stop_after_the_current_file(model_data: Path, tmp_path: Path, mode: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    images = model_data / "synthetic" / "test" / "images"
    runner, key, name = (infer, "infer", "write_outputs") if mode == "infer" else (tiled, "tiling", "segment_file")
    original = getattr(runner, name)

    def then_signal(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)
        stopping.request(signal.SIGTERM)  # arrives while the first file's outputs are written
        return result

    monkeypatch.setattr(runner, name, then_signal)
    out = tmp_path / "out"
    overrides = _mode(model_data, tmp_path, mode, f"{key}.images_dir={images}", f"{key}.output_dir={out}")
    with pytest.raises(stopping.Interrupted, match=f"1 of {len(list(images.iterdir()))} images") as info:
        runner.run(compose(overrides), RunContext(tmp_path / "run", overrides))
    assert info.value.exit_code == 143
    for kind in ("masks", "overlays"):
        written = list((out / kind).iterdir())
        assert len(written) == 1 and written[0].stat().st_size > 0
    _no_partial_files(out)


def test_eval_stops_writing_nothing(model_data: Path, tmp_path: Path) -> None:
    overrides = _mode(model_data, tmp_path, "eval")
    stopping.request(signal.SIGINT)
    with pytest.raises(stopping.Interrupted, match="eval wrote nothing") as info:
        evaluate.run(compose(overrides), RunContext(tmp_path / "run", overrides))
    assert info.value.exit_code == 130
    assert not (tmp_path / "run" / "evaluation.csv").exists()


SIGNAL_AFTER_FIRST_FILE = """
import os, signal, sys
from flexseg.modes import infer
original = infer.write_outputs
def then_signal(*args):
    original(*args)
    os.kill(os.getpid(), signal.SIGTERM)
infer.write_outputs = then_signal
from flexseg.cli import main
sys.argv = ["flexseg", *sys.argv[1:]]
main()
"""


def test_cli_infer_exits_143_after_sigterm(model_data: Path, tmp_path: Path) -> None:
    script = tmp_path / "signal_infer.py"
    script.write_text(SIGNAL_AFTER_FIRST_FILE)
    out = tmp_path / "out"
    args = [*_mode(model_data, tmp_path, "infer", f"infer.output_dir={out}"), f"hydra.run.dir={tmp_path}/run"]
    seed_store(args)
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "flexseg: stopped by SIGTERM: infer wrote 1 of 4 images" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(list((out / "masks").iterdir())) == 1
    _no_partial_files(out)


def _wait_for_epoch(proc: subprocess.Popen, state_file: Path, epoch: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (state_file.is_file() and read_state(state_file).epoch >= epoch):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no epoch {epoch} within {timeout_s} s"
        time.sleep(0.02)


def _start_training(tmp_path: Path, args: list[str], log: Path) -> subprocess.Popen:
    seed_store(args)
    return subprocess.Popen(  # a session of its own: its process group is what a terminal's Ctrl-C reaches
        [sys.executable, "-m", "flexseg", *args], cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}, start_new_session=True,
    )


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_exits_130_and_the_printed_command_resumes(tmp_path: Path) -> None:
    args = [*_store(tmp_path), "train.epochs=40", "callbacks.early_stopping=false"]
    log, run_dir = tmp_path / "train.log", tmp_path / "train"
    proc = _start_training(tmp_path, [*args, f"hydra.run.dir={run_dir}"], log)
    _wait_for_epoch(proc, run_dir / "checkpoints" / "state.json", 1, log, 240)
    os.killpg(proc.pid, signal.SIGINT)  # the checkpoint writer process gets it too, as in a terminal
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text and "flexseg: stopped by SIGINT: training ended after its current step" in text
    state = read_state(run_dir / "checkpoints" / "state.json")
    assert not state.finished and not state.stopped_early and state.epoch < 40
    keras.models.load_model(run_dir / "checkpoints" / "last.keras", compile=False)
    command = text.split("Continue with: ", 1)[1].split("\n", 1)[0]
    assert command.endswith("train.resume=auto")
    resumed = shlex.split(command)[1:]
    resumed = [a if not a.startswith("train.epochs=") else f"train.epochs={state.epoch + 1}" for a in resumed]
    run_cli([*resumed, f"hydra.run.dir={tmp_path}/resumed"], cwd=tmp_path)
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert read_state(run_dir / "checkpoints" / "state.json").epoch == state.epoch + 1


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    args = [*_store(tmp_path), "train.epochs=40", "callbacks.early_stopping=false",
            "train.validation_steps=300"]  # a long validation: the second signal lands before the commit
    log, run_dir = tmp_path / "train.log", tmp_path / "train"
    proc = _start_training(tmp_path, [*args, f"hydra.run.dir={run_dir}"], log)
    _wait_for_epoch(proc, run_dir / "checkpoints" / "state.json", 1, log, 240)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    while "SIGTERM received" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM  # ended by the signal itself, no clean-up
    state = read_state(run_dir / "checkpoints" / "state.json")  # what was committed before stays readable
    keras.models.load_model(run_dir / "checkpoints" / state.checkpoint, compile=False)
