"""`mode=export` (and `train.export=true`): one checkpoint -> SavedModel + MLflow model + model card.

The folder is written whole: everything goes into a temporary sibling folder, which is then renamed
into place (an earlier export of the same checkpoint is replaced only once the new one is complete).
Where: `<training run dir>/export/` for a training run's `checkpoints/*.keras` (beside the
checkpoint), else `<this call's run dir>/export/` (a downloaded, registered or loose checkpoint, or a
fold ensemble). Then the MLflow model goes into the run as `model/` (so `runs:/<run_id>/model` serves
it), the SavedModel and the card as `export/`, and with `tracking.register_as` a new registry version
is made, tagged with the evaluation scores.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import keras
import numpy as np
import tensorflow as tf

from flexseg import __version__, tracking
from flexseg.config.schemas import Config
from flexseg.export.card import build_card, card_json, read_evaluation_csv, render_readme
from flexseg.export.onnx import write_onnx
from flexseg.inference.ensemble import ensemble_members
from flexseg.inference.predict import input_size, with_policy
from flexseg.inference.serving import ServingOptions
from flexseg.tracking import export as mlflow_export

log = logging.getLogger(__name__)
EVALUATION_PREFIXES = ("test_", "tiled_")  # what eval / tiled log onto the training run


@dataclass
class ExportResult:
    """What an export wrote and where MLflow has it."""

    folder: Path
    model_uri: str  # runs:/<run_id>/model
    version: Optional[str] = None  # the registry version made (tracking.register_as)


def export_folder(checkpoint: Path, model: keras.Model, run_dir: Path) -> Path:
    """`<training run dir>/export` for a run's `checkpoints/*.keras`, else `<run_dir>/export`.

    A training run dir holds `config.yaml` beside `checkpoints/`; a checkpoint fetched from MLflow
    into a download folder does not, nor does a fold ensemble have one folder.
    """
    train_dir = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and (train_dir / "config.yaml").is_file() and not ensemble_members(model):
        return train_dir / "export"
    return run_dir / "export"


def serving_options(cfg: Config, channels: int) -> ServingOptions:
    """The colour options of `dataset.*` and the batch / tiling settings of `infer.*` / `tiling.*`."""
    d, t = cfg.dataset, cfg.tiling
    return ServingOptions(channels, str(d.color_order), d.color_converter, d.gamma, str(d.image_interpolation),
                          cfg.infer.batch_size, t.tile_size, t.overlap, str(t.blend), t.batch_size, t.tta)


def write_saved_model(model: keras.Model, path: Path) -> Path:
    """A TensorFlow SavedModel: `serve` (float32 model input) and `serve_uint8` (0..255), (N, h, w, C) -> probabilities."""
    h, w, c = input_size(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = archive.add_endpoint("serve", lambda x: model(x, training=False),
                                 input_signature=[tf.TensorSpec((None, h, w, c), tf.float32, name="images")])
    archive.add_endpoint("serve_uint8", lambda x: serve(tf.cast(x, tf.float32) / 255.0),  # calls `serve`: one trace
                         input_signature=[tf.TensorSpec((None, h, w, c), tf.uint8, name="images")])
    archive.write_out(str(path), verbose=False)
    return path


def _example_png(height: int, width: int) -> bytes:
    """A mid-gray RGB PNG of the model size: the MLflow model's input example."""
    return cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def _replace_folder(new: Path, target: Path) -> None:
    """Rename `new` to `target`, replacing an existing `target` only after `new` is complete."""
    old = target.with_name(f".{target.name}-old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        if old.exists():
            old.rename(target)  # the earlier export stays
        raise
    shutil.rmtree(old, ignore_errors=True)


def _scores(run_id: Optional[str], checkpoint: Path) -> tuple[dict[str, float], str]:
    """The checkpoint's evaluation: `test_*` / `tiled_*` metrics of its training run, else an evaluation.csv beside it."""
    metrics = mlflow_export.run_metrics(run_id) if run_id else {}
    found = {k: v for k, v in metrics.items() if k.startswith(EVALUATION_PREFIXES)}
    if found:
        return found, f"MLflow run {run_id} (mode=eval / mode=tiled scores)"
    csv_path = checkpoint.parent.parent / "evaluation.csv"
    found = {f"test_{k}": v for k, v in read_evaluation_csv(csv_path).items()}
    return found, (str(csv_path) if found else "none")


def export_model(cfg: Config, model: keras.Model, checkpoint: Path, run_id: str, train_run_id: Optional[str],
                 run_dir: Path) -> ExportResult:
    """Write the export of one loaded checkpoint and log it into the run `run_id`.

    Args:
        cfg: The validated config (`dataset.*` colour options and classes, `infer.*`, `tiling.*`,
            `tracking.register_as`).
        model: The loaded model (any dtype policy; exported in float32).
        checkpoint: Its `.keras` file (decides the folder, see `export_folder`).
        run_id: The MLflow run to log into: the training run, or this call's own run.
        train_run_id: The checkpoint's training run (its scores go on the card), or None.
        run_dir: This call's run dir.
    """
    model = with_policy(model, "float32")
    height, width, channels = input_size(model)
    options = serving_options(cfg, channels)
    scores, source = _scores(train_run_id, checkpoint)
    name = cfg.tracking.register_as or cfg.tracking.experiment
    card = build_card(name=name, classes=cfg.dataset.classes, input_size=(height, width, channels),
                      num_outputs=int(model.output_shape[-1]), options=options, dataset=cfg.dataset, scores=scores,
                      scores_source=source, checkpoint=checkpoint.resolve(), run_id=run_id,
                      versions={"flexseg": __version__, "git_commit": tracking.git_commit()})
    folder = export_folder(checkpoint, model, run_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write_saved_model(model, tmp / "saved_model")
        difference = write_onnx(model, tmp / "model.onnx")  # None: the `onnx` extra is not installed (or failed)
        card["onnx"] = None if difference is None else {"file": "model.onnx", "max_abs_difference": difference}
        (tmp / "model_card.json").write_text(card_json(card))
        (tmp / "README.md").write_text(render_readme(card))
        keras_file = tmp / mlflow_export.KERAS_FILE
        model.save(keras_file)
        metadata = {"flexseg": __version__, "classes": [c["name"] for c in card["classes"]]}
        mlflow_export.save_pyfunc_model(tmp / "mlflow_model", keras_file, options.to_dict(), _example_png(height, width),
                                        {"model_card": tmp / "model_card.json", "readme": tmp / "README.md"}, metadata)
        keras_file.unlink()  # the MLflow model holds it (artifacts/model.keras)
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    source_uri = mlflow_export.log_to_run(run_id, folder / "mlflow_model")
    mlflow_export.log_to_run(run_id, folder / "saved_model", "export/saved_model")
    for part in ("model_card.json", "README.md", "model.onnx"):
        if (folder / part).is_file():
            mlflow_export.log_to_run(run_id, folder / part, "export")
    result = ExportResult(folder, f"runs:/{run_id}/{mlflow_export.MODEL_ARTIFACT}")
    if cfg.tracking.register_as:
        tags = {"flexseg": __version__, "checkpoint": str(checkpoint.resolve()),
                **{k: f"{v:.6g}" for k, v in card["evaluation"]["scores"].items()}}
        result.version = mlflow_export.register_model(cfg.tracking.register_as, source_uri, run_id, tags)
        log.info("registered as models:/%s/%s", cfg.tracking.register_as, result.version)
    log.info("exported %s to %s (SavedModel, MLflow model, model card); MLflow model %s", checkpoint, folder,
             result.model_uri)
    return result
