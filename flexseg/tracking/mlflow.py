"""The MLflow store: setup, runs and queries. What runs write lives in `writes`, a lost server's spool in
`offline` / `spool` / `upload`; only flexseg/tracking/ imports mlflow."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import mlflow
from mlflow.tracking import MlflowClient

from flexseg.errors import FlexsegError
from flexseg.stopping import Interrupted
from flexseg.tracking import offline, server

log = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT = "checkpoints/best.keras"
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
# The kind MLflow 3's UI records for an experiment (GenAI or model training). MLflow 3.17's UI opens
# the view of its sidebar switch instead; `naming.ui_route` links select the model-training view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def resolve_uri(uri: str) -> str:
    """Make a relative `sqlite:///file.db` absolute against the current working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _default_artifact_location(uri: str) -> str | None:
    """Beside the SQLite file; for a server none: it stores them (`mlflow-artifacts:/`, proxied)."""
    if server.is_server(uri):
        return None
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    return str(Path("mlartifacts").resolve().as_uri())


def setup(uri: str, experiment: str, artifact_location: str | None = None) -> str:
    """Point MLflow at the store and return the experiment id (created on first use).

    The experiment is marked as model training (`mlflow.experimentKind`), unless it already has a
    kind (a user's choice in the UI stays). A server (`http(s)://`) is asked first whether it answers.

    Raises:
        FlexsegError: when the server at `uri` does not answer (`server.require_server`, about 10 s at most).
    """
    uri = resolve_uri(uri)
    server.require_server(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = artifact_location or _default_artifact_location(uri)
        try:
            client.create_experiment(experiment, artifact_location=location,
                                     tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel run
            pass
        exp = client.get_experiment_by_name(experiment)
    if EXPERIMENT_KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    if server.is_server(uri) and exp.artifact_location.startswith("file:"):
        log.warning("the experiment '%s' on %s stores artifacts on this machine's disk (%s), not through the "
                    "server: it was created so by an older flexseg. Choose a new tracking.experiment to store "
                    "them on the server.", experiment, uri, exp.artifact_location)
    return exp.experiment_id


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a config dataclass into {'model.num_layers': '8', ...} (lists as JSON text)."""
    if dataclasses.is_dataclass(obj):
        out: dict[str, str] = {}
        for f in dataclasses.fields(obj):
            out.update(flatten_params(getattr(obj, f.name), f"{prefix}{f.name}."))
        return out
    key = prefix.rstrip(".")
    if isinstance(obj, enum.Enum):
        return {key: str(obj.value)}
    if isinstance(obj, (list, tuple)):
        return {key: json.dumps([dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in obj])}
    return {key: str(obj)}


def git_commit() -> str:
    """The repository's commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def start_run(
    experiment_id: str,
    run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    spool_dir: Path | None = None,
) -> Iterator[str]:
    """Start (or reopen, with `run_id`) a run; yields its id and ends it, FAILED on an exception, KILLED
    (tagged `flexseg.stopped_by`, `flexseg.resume`) when a signal stopped it (`flexseg.stopping.Interrupted`).

    With `parent_run_id` the new run is a child of that run (tag `mlflow.parentRunId`, shown nested in
    the MLflow UI); the parent is neither reopened nor ended, so its status never changes. Inside a
    sweep job a new run carries the sweep's tags and, without a parent of its own, is the sweep's child.
    With `spool_dir`, a lost store does not stop the run: its writes and end go to that folder
    (`flexseg.tracking.offline`) for `flexseg mode=sync` to upload.
    """
    if run_id is None:
        from flexseg.tracking.sweeps import sweep_defaults

        parent_run_id, tags, run_name = sweep_defaults(parent_run_id, tags, run_name)
    if parent_run_id is not None:
        tags = {**(tags or {}), PARENT_TAG: parent_run_id}
    try:
        run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name, tags=tags)
    except mlflow.exceptions.MlflowException as err:
        if run_id is None:
            raise
        raise FlexsegError(f"Cannot reopen the MLflow run {run_id}: {err}. Is tracking.uri the store it was "
                           "logged to (and the run not deleted)?") from err
    if spool_dir is not None:
        offline.register(run.info.run_id, spool_dir, mlflow.get_tracking_uri())
    try:
        yield run.info.run_id
    except Interrupted as stop:  # a signal ended the run at a safe point: KILLED, tagged with how to continue
        tags = stop.tags
        offline.write(run.info.run_id, lambda: mlflow.set_tags(tags), lambda _: {"op": "tags", "tags": tags})
        offline.end_run(run.info.run_id, "KILLED")
        raise
    except BaseException:
        offline.end_run(run.info.run_id, "FAILED")
        raise
    offline.end_run(run.info.run_id, "FINISHED")


def active_run_id() -> str:
    """Id of the run opened by `start_run`."""
    return mlflow.active_run().info.run_id


def find_latest_training_run(experiment_id: str) -> str | None:
    """Id of the newest FINISHED run tagged mode=train in the experiment, or None."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="tags.mode = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


def training_runs(experiment_id: str, max_results: int = 50) -> list[dict[str, str]]:
    """Training runs of the experiment, newest first.

    Returns:
        One dict per run: `run_id`, `status`, `run_dir` and `config_hash` (tags; '' when absent).
    """
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id], filter_string="tags.mode = 'train'",
        order_by=["attributes.start_time DESC"], max_results=max_results, output_format="list",
    )
    return [{"run_id": r.info.run_id, "status": r.info.status, "run_dir": r.data.tags.get("run_dir", ""),
             "config_hash": r.data.tags.get("config_hash", "")} for r in runs]


def log_missing_metrics(run_id: str, history: list[dict[str, float]]) -> int:
    """Log the values of `history` (one dict per epoch, `epoch` = step) that the run lacks.

    A training killed between committing an epoch and logging it left that epoch out of MLflow;
    a resumed training fills the gap without logging any step twice.

    Returns:
        The number of (metric, step) values logged.
    """
    from mlflow.entities import Metric

    client = MlflowClient()
    keys = sorted({k for row in history for k in row} - {"epoch"})
    logged = {k: {m.step for m in client.get_metric_history(run_id, k)} for k in keys}
    now = int(time.time() * 1000)
    missing = [Metric(k, float(row[k]), now, int(row["epoch"])) for row in history for k in keys
               if k in row and int(row["epoch"]) not in logged[k]]
    for i in range(0, len(missing), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=missing[i : i + 1000])
    return len(missing)


def get_tags(run_id: str) -> dict[str, str]:
    """All tags of a run."""
    return dict(MlflowClient().get_run(run_id).data.tags)


def run_tag(run_id: str, key: str) -> str | None:
    """A tag of a run, or None when the run or the tag does not exist."""
    try:
        return MlflowClient().get_run(run_id).data.tags.get(key)
    except mlflow.exceptions.MlflowException:
        return None


def fetch_checkpoint(run_id: str) -> Path:
    """Local path of the best checkpoint logged by a training run.

    Raises:
        FlexsegError: when the run does not exist or logged no checkpoint.
    """
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT))
    except Exception as err:  # MLflow raises several types for a missing run/artifact
        raise FlexsegError(
            f"ckpt=runs:/{run_id}: cannot fetch '{CHECKPOINT_ARTIFACT}' from that MLflow run ({err}). "
            "Check the run id with `make ui`, or pass ckpt=path/to/model.keras."
        ) from err


def child_training_runs(parent_id: str) -> list[str]:
    """Ids of the FINISHED training runs (tag mode=train) whose parent is `parent_id`, oldest first.

    The fold models of a cross-validation sweep (runs of other sweeps, without a `cv_fold` tag, are
    left out); [] when the run does not exist or has none.
    """
    try:
        experiment_id = MlflowClient().get_run(parent_id).info.experiment_id
    except mlflow.exceptions.MlflowException:
        return []
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.mode = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"], output_format="list",
    )
    return [r.info.run_id for r in runs if "cv_fold" in r.data.tags or "sweep_parent" not in r.data.tags]
