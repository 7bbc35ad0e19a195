"""MLflow side of sweeps: the parent run of a sweep, its children, and what the sweeper logs on the parent.

A sweep is one parent run; every run a job of the sweep starts carries `sweep_parent` and `sweep_job`
tags, and a training run is also a child (`mlflow.parentRunId`) so the UI nests it. All calls here use
`MlflowClient` with explicit run ids: the sweeper never holds an active (fluent) run, so jobs that run
in the same process (Hydra's basic launcher) start their own runs as usual.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Optional

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from flexseg.tracking.mlflow import PARENT_TAG, resolve_uri, setup

log = logging.getLogger(__name__)

SWEEP_PARENT_TAG = "sweep_parent"
SWEEP_JOB_TAG = "sweep_job"
TRIAL_STATE_TAG = "trial_state"
ERROR_TAG = "error"
_job: dict[str, Any] = {}  # the sweep job this process runs now: {"parent": run id, "tags": {...}}


def set_sweep_job(parent_run_id: Optional[str], tags: Optional[dict[str, str]] = None) -> None:
    """Make the runs this process starts from now on part of a sweep (None: no sweep)."""
    _job.clear()
    if parent_run_id:
        _job.update(parent=parent_run_id, tags={SWEEP_PARENT_TAG: parent_run_id, **(tags or {})})


def sweep_defaults(parent_run_id: Optional[str], tags: Optional[dict[str, str]], name: Optional[str] = None
                   ) -> tuple[Optional[str], dict[str, str], Optional[str]]:
    """(parent, tags, name) for a new run: in a sweep job a run with no parent of its own becomes a
    child of the sweep, and its name gets the job number (`lizard/train #3 lr=…`)."""
    if not _job:
        return parent_run_id, dict(tags or {}), name
    if name:
        head, _, rest = name.partition(" ")
        name = f"{head} #{_job['tags'].get(SWEEP_JOB_TAG, '')} {rest}".strip()
    return parent_run_id or _job["parent"], {**(tags or {}), **_job["tags"]}, name


def enable_wal(uri: str) -> None:
    """Switch a SQLite store to write-ahead logging, so parallel jobs write without 'database is locked'.

    WAL is a property of the database file (it stays on). Not for files on network filesystems,
    where SQLite's shared memory does not work: use a tracking server there.
    """
    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///"):
        with sqlite3.connect(uri[len("sqlite:///"):], timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")


def open_parent(uri: str, experiment: str, name: str, tags: dict[str, str], params: dict[str, str],
                reuse_tag: Optional[tuple[str, str]] = None, artifact_location: Optional[str] = None
                ) -> tuple[str, str, bool]:
    """The parent run of a sweep: a new one, or (with `reuse_tag`) the run of an interrupted sweep.

    Returns:
        (experiment id, parent run id, True when an existing run was reopened)
    """
    exp_id = setup(uri, experiment, artifact_location)
    client = MlflowClient()
    if reuse_tag is not None:
        found = client.search_runs([exp_id], filter_string=f"tags.{reuse_tag[0]} = '{reuse_tag[1]}'",
                                   order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return exp_id, found[0].info.run_id, True
    run = client.create_run(exp_id, run_name=name, tags=tags)
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i: i + 100])
    return exp_id, run.info.run_id, False


def _experiments(exp_id: str) -> list[str]:
    """The parent's experiment first, then every other one: a sweep over `experiment=a,b` or
    `dataset=a,b` logs its jobs into their own experiments."""
    others = [e.experiment_id for e in MlflowClient().search_experiments(max_results=1000) if e.experiment_id != exp_id]
    return [exp_id, *others]


def sweep_runs(exp_id: str, parent_run_id: str) -> list[dict[str, Any]]:
    """The runs the jobs of a sweep started, oldest first, as plain dicts.

    Each has `run_id`, `name`, `status`, `tags`, `params`, `metrics` and `seconds` (run duration,
    None while running).
    """
    runs = MlflowClient().search_runs(_experiments(exp_id), filter_string=f"tags.{SWEEP_PARENT_TAG} = '{parent_run_id}'",
                                      order_by=["attributes.start_time ASC"], max_results=5000)
    return [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "tags": dict(r.data.tags),
             "params": dict(r.data.params), "metrics": dict(r.data.metrics),
             "seconds": (r.info.end_time - r.info.start_time) / 1000 if r.info.end_time else None} for r in runs]


def log_to_run(run_id: str, metrics: Optional[dict[str, float]] = None, tags: Optional[dict[str, str]] = None,
               step: int = 0) -> None:
    """Metrics and tags into a run without opening it (its status stays)."""
    now = int(time.time() * 1000)
    MlflowClient().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
                             tags=[RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()])


def log_files_to_run(run_id: str, files: list[Path], artifact_path: Optional[str] = None) -> None:
    client = MlflowClient()
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)


def end_run(run_id: str, status: str) -> None:
    """Set a run's final status (FINISHED, FAILED, KILLED)."""
    MlflowClient().set_terminated(run_id, status=status)


def record_failed_job(exp_id: str, name: str, error: str, overrides: list[str]) -> str:
    """A FAILED run standing for a sweep job that stopped before it started a run of its own."""
    if not _job:
        raise RuntimeError("record_failed_job outside a sweep job")
    tags = {**_job["tags"], PARENT_TAG: _job["parent"], ERROR_TAG: error[:5000],
            "overrides": " ".join(overrides)[:5000], "mlflow.runName": name}
    client = MlflowClient()
    run = client.create_run(exp_id, run_name=name, tags=tags)
    params = [Param(o.split("=", 1)[0].lstrip("+~"), o.split("=", 1)[1][:6000]) for o in overrides if "=" in o]
    if params:
        client.log_batch(run.info.run_id, params=params[:100])
    client.set_terminated(run.info.run_id, status="FAILED")
    return run.info.run_id


def job_run_ids(exp_id: str, parent_run_id: str, job: int) -> list[str]:
    """Ids of the runs job number `job` of the sweep started."""
    runs = MlflowClient().search_runs(
        _experiments(exp_id), filter_string=f"tags.{SWEEP_PARENT_TAG} = '{parent_run_id}' and tags.{SWEEP_JOB_TAG} = '{job}'")
    return [r.info.run_id for r in runs]


def search_space_tag(space: dict[str, str]) -> str:
    return json.dumps(space, sort_keys=True)[:5000]
