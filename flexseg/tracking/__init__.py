"""MLflow tracking: every MLflow call of flexseg lives in `flexseg.tracking` (`mlflow`: the store and
runs, `writes`: what runs log, `offline` / `spool` / `upload`: a run that lost its server, `server`).

The only package that imports mlflow; modes use `from flexseg import tracking`.
"""

from flexseg.tracking.mlflow import (
    resolve_uri,
    setup,
    flatten_params,
    git_commit,
    start_run,
    active_run_id,
    find_latest_training_run,
    training_runs,
    log_missing_metrics,
    get_tags,
    run_tag,
    fetch_checkpoint,
)
from flexseg.tracking.naming import run_name, ui_route
from flexseg.tracking.mlflow import child_training_runs
from flexseg.tracking.writes import (
    log_params,
    log_metrics,
    log_metrics_to,
    log_image,
    log_artifact,
    log_artifacts,
    log_text,
    set_tags,
)
from flexseg.tracking.server import is_server, probe
from flexseg.tracking.spool import SPOOL_DIR, find_local_spools, find_spools
from flexseg.tracking.upload import SpoolUpload, upload_pending, upload_spool

__all__ = [
    "resolve_uri",
    "setup",
    "flatten_params",
    "git_commit",
    "start_run",
    "active_run_id",
    "is_server",
    "probe",
    "SPOOL_DIR",
    "find_local_spools",
    "find_spools",
    "SpoolUpload",
    "upload_pending",
    "upload_spool",
    "log_params",
    "log_metrics",
    "log_metrics_to",
    "log_image",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "set_tags",
    "find_latest_training_run",
    "training_runs",
    "log_missing_metrics",
    "get_tags",
    "run_tag",
    "fetch_checkpoint",
    "run_name",
    "ui_route",
    "child_training_runs",
]
