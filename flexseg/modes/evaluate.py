"""`flexseg mode=eval`: checkpoint + test split -> evaluation.csv (reference lines first) -> MLflow."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import keras
import numpy as np

from flexseg import tracking
from flexseg.config import Config
from flexseg.data.discovery import build_split
from flexseg.data.pipeline import build_dataset, labels_from_target
from flexseg.errors import FlexsegError
from flexseg.metrics import compute_confusion, compute_scores, nanmean_foreground
from flexseg.modes import common

log = logging.getLogger(__name__)


def load_for_config(cfg: Config) -> tuple[keras.Model, Path, str | None, str]:
    """Resolve `cfg.ckpt`, load the model and check it predicts the config's classes.

    Returns:
        (model, checkpoint path, training run id or None, experiment id)
    """
    exp_id = common.open_tracking(cfg)
    path, run_id = common.resolve_checkpoint(cfg.ckpt, exp_id, cfg.tracking.experiment)
    model = common.load_checkpoint(path)
    outputs = int(model.output_shape[-1])
    if outputs != cfg.model.num_classes:
        raise FlexsegError(
            f"The checkpoint '{path}' predicts {outputs} class channel(s), but the config expects "
            f"{cfg.model.num_classes} (dataset '{cfg.dataset.name}'). Use the dataset/experiment it was trained with."
        )
    log.info("model: %s%s", path, f" (MLflow run {run_id})" if run_id else "")
    return model, path, run_id, exp_id


def write_key_values(path: Path, rows: list[tuple[str, float]]) -> Path:
    """Write `key,value` lines (the reference evaluation.csv format) via temp file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows((k, f"{v:.6g}") for k, v in rows)
    os.replace(tmp, path)
    return path


def run(cfg: Config, ctx) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Evaluate a checkpoint on the test split; returns loss, reference metric and per-class scores."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = load_for_config(cfg)
    common.compile_model(model, cfg)
    h, w, c = common.model_input_size(model)
    split = build_split(cfg.dataset, "test")
    ds = build_dataset(split, common.palette(cfg), (h, w), c, cfg.model.num_classes, cfg.train.batch_size)
    reference = model.evaluate(ds, return_dict=True, verbose=0)

    names = common.class_names(cfg)
    confusion = np.zeros((len(names), len(names)), np.int64)
    for x, y in ds:
        pred = model.predict_on_batch(x)
        confusion += compute_confusion(labels_from_target(y.numpy()), labels_from_target(np.asarray(pred)), len(names))
    scores = compute_scores(confusion)

    rows: list[tuple[str, float]] = [("loss", reference["loss"])]
    rows += [(k, v) for k, v in reference.items() if k in ("dice_coef_multiclass", "dice_coef")]
    for metric in ("dice", "iou", "precision", "recall"):
        rows += [(f"{metric}_{n}", float(v)) for n, v in zip(names, scores[metric])]
    rows += [("mean_foreground_dice", nanmean_foreground(scores["dice"])),
             ("mean_foreground_iou", nanmean_foreground(scores["iou"]))]
    out = write_key_values(ctx.run_dir / "evaluation.csv", rows)
    results = dict(rows)

    tags = None if run_id else common.run_tags(cfg, "eval", ctx.run_dir)
    with tracking.start_run(exp_id, run_id=run_id, tags=tags):
        tracking.log_metrics({f"test_{k}": v for k, v in results.items() if np.isfinite(v)})
        tracking.log_artifact(out, "eval")
    log.info("evaluation of %d test images written to %s", len(split), out)
    for k, v in rows:
        log.info("  %-28s %.4f", k, v)
    log.info("test mean foreground dice: %.4f (reference dice_coef_multiclass, background included: %.4f)",
             results["mean_foreground_dice"], results.get("dice_coef_multiclass", float("nan")))
    results["objective"] = results["mean_foreground_dice"]
    return results
