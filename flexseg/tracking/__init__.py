"""MLflow tracking: every MLflow call of flexseg lives in `flexseg.tracking.mlflow`.

The only package that imports mlflow; modes use `from flexseg import tracking`.
"""

from flexseg.tracking.mlflow import (
    resolve_uri,
    setup,
    flatten_params,
    git_commit,
    start_run,
    active_run_id,
    log_params,
    log_metrics,
    log_metrics_to,
    log_image,
    log_artifact,
    log_artifacts,
    log_text,
    set_tags,
    find_latest_training_run,
    training_runs,
    log_missing_metrics,
    get_tags,
    run_tag,
    fetch_checkpoint,
)
from flexseg.tracking.naming import run_name, ui_route
from flexseg.tracking.mlflow import child_training_runs

__all__ = [
    "resolve_uri",
    "setup",
    "flatten_params",
    "git_commit",
    "start_run",
    "active_run_id",
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
