"""Resume after a crash: same run dir, same MLflow run, every epoch step logged exactly once."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from conftest import REPO, TINY, compose, kill_after_epoch, run_cli, seed_store
from omegaconf import OmegaConf

from flexseg.training.callbacks import MlflowLogger, read_state
from flexseg.cli import RunContext
from flexseg.errors import FlexsegError
from flexseg.modes import train
from flexseg.training import resume


def _store(tmp_path: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic",
            "tracking.experiment=resume", *TINY, "callbacks=minimal"]


def _train(tmp_path: Path, name: str, overrides: list[str]) -> dict[str, float]:
    cfg = compose(overrides)
    ctx = RunContext(tmp_path / name, overrides, OmegaConf.to_yaml(OmegaConf.structured(compose(overrides))))
    return train.run(cfg, ctx)


def _client(tmp_path: Path):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    return client, runs


def _steps(client, run_id: str, key: str) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_crash_between_commit_and_mlflow_resumes_without_gap_or_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [*_store(tmp_path), "train.epochs=4", "train.lr_schedule=cosine", "train.learning_rate=0.01"]
    log_epoch = MlflowLogger.on_epoch_end

    def crash_at_epoch_3(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        if epoch == 2:  # epoch 3 is committed (state.json) but not yet in MLflow
            self.recorder.writer.flush()  # the background commit of epoch 3 landed before the crash
            raise RuntimeError("simulated crash")
        log_epoch(self, epoch, logs)

    monkeypatch.setattr(MlflowLogger, "on_epoch_end", crash_at_epoch_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(tmp_path, "first", overrides)
    monkeypatch.setattr(MlflowLogger, "on_epoch_end", log_epoch)
    state = read_state(tmp_path / "first" / "checkpoints" / "state.json")
    assert (state.epoch, state.finished) == (3, False)

    result = _train(tmp_path, "second", [*overrides, "train.resume=auto"])
    assert result["epochs"] == 4
    client, runs = _client(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and "resume_1" in run.data.tags
    for key in ("val_loss", "loss", "lr", "val_dice"):
        assert _steps(client, run.info.run_id, key) == [1, 2, 3, 4], key
    with (tmp_path / "first" / "train_losses.csv").open() as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3", "4"]
    # the schedule continued from the restored optimizer step: 8 train pairs / batch 4 = 2 steps per epoch
    cosine = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=8)
    lr_epoch_4 = [m.value for m in client.get_metric_history(run.info.run_id, "lr") if m.step == 4]
    assert lr_epoch_4 == [pytest.approx(float(cosine(6)), rel=1e-5)]
    assert not (tmp_path / "second" / "checkpoints").exists()  # the resumed run kept its own dir
    assert read_state(tmp_path / "first" / "checkpoints" / "state.json").finished

    # auto after a finished run starts a new one; true with more epochs extends the finished one
    _train(tmp_path, "third", [*_store(tmp_path), "train.epochs=1", "train.resume=auto"])
    assert len(_client(tmp_path)[1]) == 2


def test_resume_choices_and_errors(tmp_path: Path) -> None:
    # A bad value stops at composition (tests/config); `false` is the bool False there.
    assert resume.find_resume_point(compose(["train.resume=false"]).train.resume, None, "0", "x") is None
    with pytest.raises(FlexsegError, match="has no checkpoints/state.json"):
        resume.find_resume_point("true", str(tmp_path), "0", "x")


def test_a_run_dir_still_being_trained_is_not_resumed(tmp_path: Path) -> None:
    import json
    import socket

    from flexseg.training.callbacks import TrainingState, write_state

    write_state(tmp_path / "checkpoints" / "state.json", TrainingState(epoch=1))
    lock = tmp_path / "checkpoints" / resume.LOCK_FILE
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # a live process
    with pytest.raises(FlexsegError, match="is still being trained by process"):
        resume.find_resume_point("true", str(tmp_path), "0", "x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))  # left by a kill -9
    assert resume.find_resume_point("true", str(tmp_path), "0", "x").state.epoch == 1


def test_resume_true_with_nothing_to_resume_fails(tmp_path: Path) -> None:
    with pytest.raises(FlexsegError, match="train.resume=true: no training run"):
        _train(tmp_path, "run", [*_store(tmp_path), "train.epochs=1", "train.resume=true"])


def test_resume_continues_only_a_run_with_the_same_config(tmp_path: Path) -> None:
    base = [*_store(tmp_path), "train.epochs=1"]
    _train(tmp_path, "a", [*base, "train.learning_rate=0.01"])
    _train(tmp_path, "b", [*base, "train.learning_rate=0.001"])  # newer, other hyperparameters (a sweep's job)
    # more epochs for run a: never continue b, the newest, with a's learning rate
    _train(tmp_path, "a2", [*_store(tmp_path), "train.epochs=2", "train.learning_rate=0.01", "train.resume=true"])
    assert read_state(tmp_path / "a" / "checkpoints" / "state.json").epoch == 2
    assert read_state(tmp_path / "b" / "checkpoints" / "state.json").epoch == 1
    with pytest.raises(FlexsegError, match=r"differs in: .*train.learning_rate: trained 0.001, now 0.1"):
        _train(tmp_path, "c", [*base, "train.learning_rate=0.1", "train.resume=true"])
    with pytest.raises(FlexsegError, match="train.learning_rate: trained 0.001, now 0.01"):
        _train(tmp_path, "d", [*base, "train.learning_rate=0.01", "train.resume=true",
                               f"train.resume_dir={tmp_path / 'b'}"])
    _train(tmp_path, "e", [*base, "train.learning_rate=0.1", "train.resume=auto"])  # auto: a new run
    assert len(_client(tmp_path)[1]) == 3


def test_resume_refuses_another_model(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml({"model": {"base_filters": 4}, "dataset": {}}))
    current = OmegaConf.to_yaml({"model": {"base_filters": 8}, "dataset": {}})
    with pytest.raises(FlexsegError, match="model.base_filters: trained 4, now 8"):
        resume.check_compatible(tmp_path, current)


@pytest.mark.slow
def test_sigkill_after_epoch_2_of_4_then_resume_into_the_same_run(tmp_path: Path) -> None:
    from flexseg import tracking

    args = [*_store(tmp_path), "train.epochs=4"]
    seed_store(args)
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flexseg", *args, f"hydra.run.dir={tmp_path}/train"], cwd=tmp_path, stdout=log,
        stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)},
    )
    killed_at = kill_after_epoch(proc, tmp_path / "train", 2, 240, tmp_path / "killed.log")
    assert 2 <= killed_at < 4

    client, runs = _client(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "RUNNING"  # kill -9 ends nothing
    exp_id = runs[0].info.experiment_id
    tracking.setup(f"sqlite:///{tmp_path}/mlflow.db", "resume")
    assert tracking.find_latest_training_run(exp_id) is None  # ckpt=latest ignores the killed run

    run_cli([*args, "train.resume=true", f"hydra.run.dir={tmp_path}/resumed"], cwd=tmp_path)
    client, runs = _client(tmp_path)
    assert len(runs) == 1
    run_id = runs[0].info.run_id
    assert runs[0].info.status == "FINISHED"
    assert _steps(client, run_id, "val_loss") == [1, 2, 3, 4]
    assert tracking.find_latest_training_run(exp_id) == run_id
    state = read_state(tmp_path / "train" / "checkpoints" / "state.json")
    assert (state.epoch, state.finished, state.run_id) == (4, True, run_id)
    for name in ("last.keras", "best.keras"):
        keras.models.load_model(tmp_path / "train" / "checkpoints" / name, compile=False, safe_mode=True)
    artifacts = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/best.keras", "checkpoints/last.keras"} <= artifacts
