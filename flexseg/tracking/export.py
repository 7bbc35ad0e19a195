"""`mode=export` in MLflow: the pyfunc model saved from code, logged into a run, registered; and
`ckpt=models:/NAME/VERSION` / `models:/NAME@ALIAS` fetched back to the Keras file of a registered export.

The MLflow model is saved with `python_model=` the path of `flexseg/tracking/pyfunc_model.py`
("models from code": nothing is pickled) and flexseg's own package as `code_paths`, so loading and
`mlflow models serve --env-manager local` need flexseg's dependencies, not flexseg installed. It has
no input schema (one would make MLflow refuse either numpy pixels or a DataFrame of encoded images),
an output schema (label maps), a params schema (`output`) and a PNG input example.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
FLEXSEG_DIR = Path(__file__).resolve().parent.parent
MODEL_ARTIFACT = "model"  # runs:/<run_id>/model
KERAS_ARTIFACT = "keras_model"  # the artifact name pyfunc_model.py loads
KERAS_FILE = "model.keras"  # artifacts/model.keras inside the MLflow model
# Distributions the model needs at load time (flexseg comes as code), pinned to the versions here.
REQUIREMENTS = ("mlflow", "tensorflow", "keras", "numpy", "pandas", "opencv-python-headless", "tifffile", "omegaconf")


def requirements() -> list[str]:
    """`name==version` of `REQUIREMENTS` as installed (the CPU TensorFlow build written as `tensorflow`)."""
    pins = []
    for name in REQUIREMENTS:
        for dist in (name, f"{name}-cpu") if name == "tensorflow" else (name,):
            try:
                pins.append(f"{name}=={importlib.metadata.version(dist)}")
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return pins


def save_pyfunc_model(path: Path, keras_file: Path, model_config: dict[str, Any], example_png: bytes,
                      extra_artifacts: dict[str, Path], metadata: dict[str, Any]) -> Path:
    """Write the MLflow model folder `path` (which must not exist yet).

    Args:
        path: The folder to create.
        keras_file: The `.keras` model it serves (copied in as `artifacts/model.keras`).
        model_config: `flexseg.inference.serving.ServingOptions.to_dict()`.
        example_png: One encoded image, the input example (a DataFrame with an `image` column).
        extra_artifacts: More files to carry (the model card), by artifact name.
        metadata: Free-form `metadata` of the MLmodel file (classes, flexseg version).
    """
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    signature = ModelSignature(
        inputs=None, outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1), "labels")]),
        params=ParamSchema([ParamSpec("output", "string", "labels")]),
    )
    artifacts = {KERAS_ARTIFACT: str(keras_file), **{k: str(v) for k, v in extra_artifacts.items()}}
    mlflow.pyfunc.save_model(
        str(path), python_model=str(PYFUNC_CODE), artifacts=artifacts, model_config=model_config,
        code_paths=[str(FLEXSEG_DIR)], signature=signature, input_example=pd.DataFrame({"image": [example_png]}),
        pip_requirements=requirements(), metadata=metadata,
    )
    return path


def log_to_run(run_id: str, path: Path, artifact_path: str = MODEL_ARTIFACT) -> str:
    """Copy a folder's contents (a saved model) to `artifact_path`, or a file into it, without reopening the run.

    Returns:
        The artifact URI of `artifact_path` (for a model folder, `runs:/<run_id>/<artifact_path>` loads it).
    """
    client = MlflowClient()
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)
    return f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"


def run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of a run ({} when the run does not exist)."""
    try:
        return dict(MlflowClient().get_run(run_id).data.metrics)
    except MlflowException:
        return {}


def register_model(name: str, source: str, run_id: str, tags: dict[str, str]) -> str:
    """A new version of the registered model `name` (created on first use) from the model at `source`.

    Returns:
        The new version number, as text.

    Raises:
        FlexsegError: naming `tracking.register_as` when the registry refuses the name.
    """
    client = MlflowClient()
    try:
        try:
            client.create_registered_model(name, tags={"flexseg": "segmentation"})
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(name, source, run_id=run_id, tags=tags)
    except MlflowException as err:
        raise FlexsegError(f"tracking.register_as='{name}': the model registry refused it ({err.message}). "
                           "Use letters, digits, '-', '_' and '.'.") from err
    return str(version.version)


def _versions(client: MlflowClient, name: str) -> str:
    try:
        found = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        found = []
    return f"versions {', '.join(map(str, found))}" if found else "no versions"


def fetch_registered_checkpoint(uri: str) -> tuple[Path, str | None]:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS` -> (local Keras file of that export, its run id).

    Raises:
        FlexsegError: when the name, version or alias does not exist, or the version is no flexseg export.
    """
    client = MlflowClient()
    ref = uri[len("models:/") :].strip("/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = ref.rpartition("/")
            if number.lower() == "latest":  # as MLflow reads models:/NAME/latest: the highest version
                found = client.search_model_versions(f"name = '{name}'")
                number = str(max((int(v.version) for v in found), default=0))
            if not name or not number.isdigit():
                raise FlexsegError(f"ckpt='{uri}': write models:/NAME/VERSION (a number, or latest) or "
                                   "models:/NAME@ALIAS.")
            version = client.get_model_version(name, number)
    except MlflowException as err:
        raise FlexsegError(
            f"ckpt='{uri}': the model registry of {mlflow.get_tracking_uri()} has no such model version "
            f"({err.message}); '{name}' has {_versions(client, name)}. Register one with mode=export "
            f"tracking.register_as={name}, or check tracking.uri."
        ) from err
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.source}/artifacts/{KERAS_FILE}")
    except Exception as err:  # MLflow raises several types for a missing artifact
        raise FlexsegError(f"ckpt='{uri}': version {version.version} of '{name}' holds no artifacts/{KERAS_FILE} "
                           f"(source {version.source}); is it a flexseg export?") from err
    log.info("ckpt=%s: version %s of '%s' (run %s)", uri, version.version, name, version.run_id)
    return Path(path), version.run_id or None
