"""`flexseg mode=train`: files -> tf.data -> FlexUNet -> fit with callbacks -> checkpoint + MLflow."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import keras
import numpy as np

from flexseg import tracking
from flexseg.callbacks import BestCheckpoint, EpochInference, EpochLogger, monitor_mode
from flexseg.config import Config
from flexseg.data.discovery import build_split
from flexseg.data.pipeline import build_dataset
from flexseg.errors import FlexsegError
from flexseg.models.registry import build_model
from flexseg.modes import common

log = logging.getLogger(__name__)


def _sample_batch(ds, count: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The first `count` (image, target) pairs of a batched dataset as numpy arrays."""
    images, targets = [], []
    for x, y in ds.unbatch().take(count):
        images.append(x.numpy())
        targets.append(y.numpy())
    return np.stack(images), np.stack(targets)


def _callbacks(cfg: Config, run_dir: Path, infer_ds) -> list[keras.callbacks.Callback]:  # type: ignore[no-untyped-def]
    c = cfg.callbacks
    cbs: list[keras.callbacks.Callback] = []
    if c.reduce_lr:
        cbs.append(keras.callbacks.ReduceLROnPlateau(
            monitor=c.monitor, mode=monitor_mode(c.monitor), factor=c.reducer_factor, patience=c.reducer_patience, min_lr=c.min_lr, verbose=1))
    if c.checkpoint:
        cbs.append(BestCheckpoint(run_dir / "checkpoints" / "best.keras", c.monitor))
    if c.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=c.monitor, patience=c.patience, mode=monitor_mode(c.monitor), verbose=1))
    if c.epoch_change_infer and c.num_infer_images > 0:
        images, targets = _sample_batch(infer_ds, c.num_infer_images)
        cbs.append(EpochInference(images, targets, common.palette(cfg), run_dir / "epoch_change_infer"))
    cbs.append(EpochLogger(run_dir))  # last: sees the lr after ReduceLROnPlateau
    return cbs


def run(cfg: Config, ctx) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Train one model; returns the best monitored value (also as `objective` for sweepers)."""
    common.seed_everything(cfg.seed)
    common.prepare_dataset(cfg.dataset)
    m, t = cfg.model, cfg.train
    size = (m.image_height, m.image_width)
    pal = common.palette(cfg)
    splits = {s: build_split(cfg.dataset, s) for s in ("train", "valid")}
    log.info("dataset %s: %d train / %d valid pairs", cfg.dataset.name, len(splits["train"]), len(splits["valid"]))

    def dataset(split: str, shuffle: bool, repeat: bool):  # type: ignore[no-untyped-def]
        return build_dataset(splits[split], pal, size, m.image_channels, m.num_classes, t.batch_size,
                             shuffle=shuffle, seed=cfg.seed, repeat=repeat, shuffle_buffer=t.shuffle_buffer)

    train_ds = dataset("train", shuffle=True, repeat=t.steps_per_epoch is not None)
    valid_ds = dataset("valid", shuffle=False, repeat=t.validation_steps is not None)
    try:
        infer_ds = build_dataset(build_split(cfg.dataset, "test"), pal, size, m.image_channels, m.num_classes, 1)
    except FlexsegError:  # no test split: the reference shows mini_test images, validation is the next best
        infer_ds = dataset("valid", shuffle=False, repeat=False)

    model = common.compile_model(build_model(m), cfg)
    summary = io.StringIO()
    model.summary(print_fn=lambda line, *a, **k: summary.write(line + "\n"))
    log.info("model %s: %.3f M parameters", m.name, model.count_params() / 1e6)

    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    (ctx.run_dir / "config.yaml").write_text(ctx.config_yaml)
    exp_id = common.open_tracking(cfg)
    with tracking.start_run(exp_id, tags=common.run_tags(cfg, "train", ctx.run_dir)) as run_id:
        log.info("MLflow run %s (experiment '%s')", run_id, cfg.tracking.experiment)
        tracking.log_params(tracking.flatten_params(cfg))
        tracking.set_tags({"overrides": " ".join(ctx.overrides)[:5000]})
        tracking.log_text(ctx.config_yaml, "config.yaml")
        tracking.log_text(summary.getvalue(), "model_summary.txt")
        callbacks = _callbacks(cfg, ctx.run_dir, infer_ds)
        history = model.fit(
            train_ds, validation_data=valid_ds, epochs=t.epochs, steps_per_epoch=t.steps_per_epoch,
            validation_steps=t.validation_steps, callbacks=callbacks, verbose=2, shuffle=False,  # tf.data shuffles
        )
        best_path = ctx.run_dir / "checkpoints" / "best.keras"
        if not best_path.exists():  # checkpoint callback off, or monitor never finite
            model.save(best_path)
        tracking.log_artifact(best_path, "checkpoints")
        for name in ("train_losses.csv", "train_metrics.csv"):
            tracking.log_artifact(ctx.run_dir / name)
    values = history.history.get(cfg.callbacks.monitor, [float("nan")])
    best = float(np.nanmax(values) if monitor_mode(cfg.callbacks.monitor) == "max" else np.nanmin(values))
    log.info("training done: best %s %.4f; checkpoint %s; outputs in %s", cfg.callbacks.monitor, best, best_path,
             ctx.run_dir)
    return {f"best_{cfg.callbacks.monitor}": best, "epochs": float(len(values)), "objective": best}
