"""What runs write to MLflow: params, metrics, pictures, files, text and tags.

Every write of a run opened with a spool folder (`start_run(..., spool_dir=)`) goes through
`offline.write`: once the run's store is lost it is journaled in that folder instead, the pictures and
files with it, for `flexseg mode=sync` to upload (`flexseg.tracking.upload`).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from flexseg.tracking import offline

MAX_PARAMS = 100  # per log_batch call (MLflow's limit)


def _active_run_id() -> str:
    return mlflow.active_run().info.run_id


def log_params(params: dict[str, str]) -> None:
    """Params of the active run (values as text)."""
    run_id, values = _active_run_id(), {k: str(v) for k, v in params.items()}
    items = list(values.items())

    def send() -> None:
        for i in range(0, len(items), MAX_PARAMS):
            mlflow.log_params(dict(items[i : i + MAX_PARAMS]))

    offline.write(run_id, send, lambda _: {"op": "params", "params": values})


def _log_metrics(run_id: str, metrics: dict[str, float], step: int) -> None:
    rows = [[k, float(v), offline.now_ms(), step] for k, v in metrics.items()]
    offline.write(run_id, lambda: MlflowClient().log_batch(run_id, metrics=[Metric(*row) for row in rows]),
                  lambda _: {"op": "metrics", "metrics": rows})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Metrics of the active run at `step` (0 when None)."""
    _log_metrics(_active_run_id(), metrics, step or 0)


def log_metrics_to(run_id: str, metrics: dict[str, float]) -> None:
    """Log `metrics` into another run (e.g. test scores into the training run) without reopening it.

    The run's status and end time stay as they are; non-finite values are left out.
    """
    finite = {k: v for k, v in metrics.items() if np.isfinite(v)}
    if finite:
        _log_metrics(run_id, finite, 0)


def log_image(image: np.ndarray, key: str, step: int) -> None:
    """An (H, W, 3) uint8 RGB image tracked by step (the MLflow UI shows a step slider)."""
    run_id, now = _active_run_id(), offline.now_ms()
    offline.write(
        run_id,
        lambda: MlflowClient().log_image(run_id, image, key=key, step=step, timestamp=now, synchronous=True),
        lambda journal: {"op": "image", "file": journal.store_image(image), "key": key, "step": step,
                         "timestamp": now},
    )


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Copy the file `path` into the active run's artifacts (under `artifact_path`)."""
    run_id = _active_run_id()
    offline.write(run_id, lambda: MlflowClient().log_artifact(run_id, str(path), artifact_path),
                  lambda journal: {"op": "artifact", "file": journal.store_file(Path(path)),
                                   "artifact_path": artifact_path})


def log_artifacts(folder: Path, artifact_path: str | None = None) -> None:
    """Copy every file under `folder` into the active run's artifacts, keeping the folder layout."""
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        parent = path.parent.relative_to(folder).as_posix()
        parts = [part for part in (artifact_path, "" if parent == "." else parent) if part]
        log_artifact(path, "/".join(parts) or None)


def log_text(text: str, artifact_file: str) -> None:
    """`text` as the active run's artifact file `artifact_file` (a run-relative posix path)."""
    run_id = _active_run_id()
    offline.write(run_id, lambda: MlflowClient().log_text(run_id, text, artifact_file),
                  lambda _: {"op": "text", "text": text, "artifact_file": artifact_file})


def set_tags(tags: dict[str, str]) -> None:
    """Tags of the active run (values as text)."""
    run_id, values = _active_run_id(), {k: str(v) for k, v in tags.items()}
    offline.write(run_id, lambda: mlflow.set_tags(values), lambda _: {"op": "tags", "tags": values})
