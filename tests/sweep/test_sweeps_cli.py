"""Sweeps through the real CLI: a parent run per sweep, failed jobs recorded, Optuna continuing after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY, run_cli

pytestmark = pytest.mark.slow


def _store(tmp_path: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic",
            "tracking.experiment=sweep", *TINY, "callbacks.epoch_change_infer=false",
            "callbacks.epoch_change_tiled=false", "callbacks.plots=false"]


def _runs(tmp_path: Path) -> tuple[object, list, list]:
    """(client, parent runs, child runs) of the test's store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("sweep")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("mode") == "sweep"]
    children = [r for r in runs if "sweep_parent" in r.data.tags]
    return client, parents, children


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """Grid sweep on submitit's local executor (SLURM's code path): job 1 is invalid, job 0 still trains."""
    proc = run_cli(["-m", *_store(tmp_path), "model.num_layers=3,9", "train.epochs=1", "hydra/launcher=submitit_local",
                    "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
                    f"hydra.sweep.dir={tmp_path}/multirun"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "1 of 2 sweep jobs failed" in proc.stderr
    assert "job 1 (model.num_layers=9): model.image_height=32 is not divisible" in proc.stderr
    client, parents, children = _runs(tmp_path)
    (parent,) = parents
    assert parent.info.status == "FINISHED" and parent.data.tags["sweeper"] == "grid"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    by_job = {c.data.tags["sweep_job"]: c for c in children}
    assert sorted(by_job) == ["0", "1"]
    assert by_job["0"].info.status == "FINISHED" and by_job["0"].data.tags["trial_state"] == "COMPLETE"
    assert by_job["1"].info.status == "FAILED" and "not divisible" in by_job["1"].data.tags["error"]
    assert parent.data.metrics["best_objective"] == pytest.approx(by_job["0"].data.metrics["objective"])
    assert parent.data.tags["best_run_id"] == by_job["0"].info.run_id
    assert parent.data.tags["best_param.model.num_layers"] == "3"
    assert {"sweep/leaderboard.csv", "sweep/objective_by_job.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    log = next((tmp_path / "multirun" / "0").glob("*.log")).read_text()
    assert "TensorFlow uses 1 thread(s)" in log  # cpus_per_task


def _trials(db: Path, state: str, with_values: bool = False) -> int:
    """Trials of the study in `state` (with `with_values`: only those whose values Optuna stored already)."""
    if not db.is_file():
        return 0
    query = "select count(*) from trials t where t.state = ?"
    if with_values:
        query += " and exists (select 1 from trial_params p where p.trial_id = t.trial_id)"
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(query, (state,)).fetchone()[0]
    except sqlite3.OperationalError:  # tables not there yet
        return 0


def test_optuna_sweep_in_parallel_continues_after_kill_9(tmp_path: Path) -> None:
    args = ["-m", "hparams_search=demo_optuna", *_store(tmp_path), "train.epochs=2", "hydra.sweeper.n_trials=5",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/multirun"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with (tmp_path / "first.log").open("w") as out:
        first = subprocess.Popen([sys.executable, "-m", "flexseg", *args], cwd=tmp_path, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline, db = time.time() + 400, tmp_path / "optuna.db"
        # Two trials done and the next batch running: kill -9 the sweeper and its joblib workers.
        while (_trials(db, "COMPLETE") < 2 or _trials(db, "RUNNING", with_values=True) < 1) and first.poll() is None \
                and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    complete, interrupted = _trials(db, "COMPLETE"), _trials(db, "RUNNING")
    assert complete >= 2 and interrupted >= 1, (tmp_path / "first.log").read_text()[-3000:]

    proc = run_cli(args, cwd=tmp_path)  # the same command
    assert "Traceback" not in proc.stderr

    import optuna

    study = optuna.load_study(study_name=optuna.get_all_study_names(f"sqlite:///{tmp_path}/optuna.db")[0],
                              storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 5 and all(t.state.is_finished() for t in study.trials)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == interrupted and all("interrupted" in t.user_attrs["error"] for t in failed)
    # Interrupted values are tried again (a kill inside Optuna's ask may have stored only some of them).
    retried = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert retried and all(study.trials[t.user_attrs["retry_of"]].params.items() <= t.params.items() for t in retried)
    client, parents, children = _runs(tmp_path)
    (parent,) = parents  # the second call continued the first call's parent run
    jobs = [c.data.tags["sweep_job"] for c in children]
    assert len(jobs) == len(set(jobs)) <= 5  # one run per trial, none twice
    killed = [c for c in children if c.info.status == "KILLED"]
    assert all(c.data.tags["trial_state"] == "FAIL" for c in killed)
    complete = [c for c in children if c.data.tags.get("trial_state") == "COMPLETE"]
    assert complete and parent.info.status == "FINISHED"
    best = max(c.data.metrics["objective"] for c in complete)
    assert parent.data.metrics["best_objective"] == pytest.approx(best)
    assert parent.data.metrics["best_objective"] == pytest.approx(study.best_value)
    assert parent.data.tags["optuna_study"] == study.study_name
    for c in children:
        assert c.data.tags["mlflow.parentRunId"] == parent.info.run_id
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/leaderboard.csv", "sweep/optimization_history.png"} <= artifacts

    again = run_cli(args, cwd=tmp_path)  # a finished study: nothing runs, and the log says how to go on
    assert "already has 5 finished trials" in again.stdout + again.stderr
    assert len(_runs(tmp_path)[2]) == len(children)


def test_cross_validation_parent_and_fold_ensemble_eval(tmp_path: Path, shared_data: Path) -> None:
    """3 folds of lung_tumor_mini (train+valid pooled): cv_mean/std on the parent; eval scores the ensemble."""
    common = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=sweep", "dataset=lung_tumor",
              f"dataset.root={shared_data / 'lung_tumor_mini'}", "model.image_height=32", "model.image_width=32",
              "model.base_filters=4", "model.base_kernels=3", "model.num_layers=2", "train.batch_size=4"]
    run_cli(["-m", *common, "dataset.folds=3", "dataset.fold=range(3)", "train.epochs=1",
             "callbacks.epoch_change_infer=false", "callbacks.epoch_change_tiled=false", "callbacks.plots=false",
             f"hydra.sweep.dir={tmp_path}/cv"], cwd=tmp_path)
    client, (parent,), children = _runs(tmp_path)
    folds = sorted(children, key=lambda c: int(c.data.tags["cv_fold"]))
    assert [c.data.tags["cv_fold"] for c in folds] == ["0", "1", "2"] and parent.data.tags["cv_folds"] == "3"
    import numpy as np

    objectives = [c.data.metrics["objective"] for c in folds]
    assert parent.data.metrics["cv_mean_objective"] == pytest.approx(np.mean(objectives))
    assert parent.data.metrics["cv_std_objective"] == pytest.approx(np.std(objectives, ddof=1))
    assert "cv_mean_val_dice_tumor" in parent.data.metrics and "cv_std_val_dice_tumor" in parent.data.metrics

    proc = run_cli([*common, "mode=eval", f"ckpt=runs:/{parent.info.run_id}", f"hydra.run.dir={tmp_path}/eval"],
                   cwd=tmp_path)
    assert "ensemble of 3 fold models" in proc.stdout + proc.stderr + (tmp_path / "eval" / "cli.log").read_text()
    parent = client.get_run(parent.info.run_id)
    assert "test_mean_foreground_dice" in parent.data.metrics  # the ensemble's score, on the CV parent
    (evaluation,) = [r for r in client.search_runs([parent.info.experiment_id], "tags.mode = 'eval'")]
    assert evaluation.data.tags["mlflow.parentRunId"] == parent.info.run_id
