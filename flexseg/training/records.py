"""What a training run records besides its epochs: config, params and model summary of a new run, the
resume tag (and committed epochs MLflow lacks) of a continued one, and the final checkpoints and files."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import keras

from flexseg import tracking
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.training.callbacks import TrainingState, save_model_atomic

log = logging.getLogger(__name__)
ARTIFACTS = ("train_losses.csv", "train_metrics.csv", "train_losses.png", "train_metrics.png")


def record_new_run(cfg: Config, ctx: RunContext, run_dir: Path, model: keras.Model, exp_id: str) -> None:
    """Config, params, overrides and model summary of a new run (into the active MLflow run)."""
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(ctx.config_yaml)
    os.replace(tmp, run_dir / "config.yaml")
    summary = io.StringIO()
    model.summary(print_fn=lambda line, *a, **k: summary.write(line + "\n"))
    tracking.log_params(tracking.flatten_params(cfg))
    tracking.set_tags({"overrides": " ".join(ctx.overrides)[:5000]})
    tracking.log_text(ctx.config_yaml, "config.yaml")
    tracking.log_text(summary.getvalue(), "model_summary.txt")
    log.info("MLflow run %s (experiment '%s'); in the UI (make ui): http://127.0.0.1:5000/%s",
             tracking.active_run_id(), cfg.tracking.experiment,
             tracking.ui_route(exp_id, tracking.active_run_id()))


def record_resume(cfg: Config, ctx: RunContext, state: TrainingState, commit: str) -> None:
    """Tag the resume (params stay those of the first start) and log committed epochs MLflow lacks."""
    run_id = tracking.active_run_id()
    n = sum(1 for k in tracking.get_tags(run_id) if k.startswith("resume_")) + 1
    tracking.set_tags({f"resume_{n}": f"from epoch {state.epoch}; commit {commit}; log {ctx.run_dir}; "
                                      f"overrides {' '.join(ctx.overrides)}"[:5000]})
    if cfg.callbacks.mlflow:
        filled = tracking.log_missing_metrics(run_id, state.history)
        if filled:
            log.info("logged %d metric values of committed epochs that MLflow lacked", filled)


def log_final_model(model: keras.Model, run_dir: Path) -> None:
    """Log best + last checkpoints (writing them when their callbacks were off), CSVs and plots."""
    ckpt = run_dir / "checkpoints"
    last = ckpt / "last.keras"
    if not last.exists():
        save_model_atomic(model, last)
    best = ckpt / "best.keras"
    if not best.exists():  # checkpoint callback off, or monitor never finite: the final model stands in
        save_model_atomic(model, best)
    tracking.log_artifact(best, "checkpoints")
    tracking.log_artifact(last, "checkpoints")
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            tracking.log_artifact(run_dir / name)
