"""`flexseg mode=train`: files -> tf.data -> FlexUNet -> fit with callbacks -> checkpoints + MLflow.

`train.resume=true|auto` continues a killed run in its own run dir and MLflow run (see
`flexseg.training.resume`); this call's Hydra dir then only holds its log. `train.strategy` spreads the
steps over replicas and workers (`flexseg.training.distribute`); of several workers only the chief writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Optional

import keras
import numpy as np

from flexseg import stopping, tracking
from flexseg.training.callbacks import (
    BestCheckpoint,
    CsvLogger,
    CurvePlotter,
    EpochInference,
    EpochRecorder,
    EpochTiledInference,
    MlflowLogger,
    PictureBudget,
    TrainingState,
    monitor_mode,
)
from flexseg.training.callbacks.timing import EpochTimer, SignalStop, TimeLimit
from flexseg.training.callbacks.pruning import TrialPruning
from flexseg.sweep.objective import best_epoch, resolve_direction
from flexseg.sweep.trial import TrialReporter
from flexseg.config.choices import LRSchedule
from flexseg.config.schemas import Config
from flexseg.data.discovery import IMAGE_EXTS, Split, build_split
from flexseg.data.augment import build_augment
from flexseg.data.folds import build_training_splits, fold_tags
from flexseg.data.pipeline import build_dataset
from flexseg.data.readers import convert_image, read_pixels, to_uint8
from flexseg.context import RunContext
from flexseg.errors import FlexsegError
from flexseg.training import records, resume
from flexseg.training.metrics import metric_log_names
from flexseg.models.registry import build_model
from flexseg.training.devices import describe_devices
from flexseg.training.distribute import build_distribution, check_resume, worker_config
from flexseg.modes import common
from flexseg.training.resume import (
    ResumePoint,
    check_compatible,
    config_hash,
    find_resume_point,
    restore_model,
    training_lock,
)

log = logging.getLogger(__name__)


def _sample_batch(ds, count: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The first `count` (image, target) pairs of a batched dataset as numpy arrays."""
    images, targets = [], []
    for x, y in ds.unbatch().take(count):
        images.append(x.numpy())
        targets.append(y.numpy())
    return np.stack(images), np.stack(targets)


def check_monitor(cfg: Config, in_sweep: bool = False) -> None:
    """Stop when `callbacks.monitor` (or, in a sweep, `train.objective`) is not a value Keras logs.

    Outside a sweep an objective that is not logged only gets a warning (the result is then NaN).
    """
    names = ["loss", *metric_log_names(cfg.train.metrics, cfg.model.num_classes, common.class_names(cfg))]
    valid = [*names, *(f"val_{n}" for n in names)]
    for key, value in (("callbacks.monitor", cfg.callbacks.monitor), ("train.objective", cfg.train.objective)):
        if value in valid:
            continue
        message = (f"{key}='{value}' is not logged by this training; choose one of {', '.join(valid)} "
                   "(metrics come from train.metrics).")
        if key == "train.objective" and not in_sweep:
            log.warning("%s The objective of this run is NaN.", message)
        else:
            raise FlexsegError(message)


def tiled_image_path(cfg: Config) -> Optional[Path]:
    """`callbacks.tiled_image`, else the first image of `<dataset.root>/large/images`, else None."""
    if cfg.callbacks.tiled_image:
        path = Path(cfg.callbacks.tiled_image)
        if not path.is_file():
            raise FlexsegError(f"callbacks.tiled_image='{path}' is not a file; give an image or null.")
        return path
    folder = Path(cfg.dataset.root) / "large" / "images"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTS) if folder.is_dir() else []
    if not files:
        log.info("epoch-change tiled inference off: no callbacks.tiled_image and no images in %s", folder)
        return None
    return files[0]


def build_callbacks(cfg: Config, run_dir: Path, state: TrainingState, infer_ds=None,  # type: ignore[no-untyped-def]
                    tiled_image: Optional[Path] = None, report=None) -> list[keras.callbacks.Callback]:
    """The callbacks `callbacks.*` switches on, in the order their contracts need.

    Order: the epoch timer and `train.time_limit` -> ReduceLROnPlateau, best checkpoint, early stopping
    (their counters change at epoch end) -> `EpochRecorder` (snapshots the model; last.keras +
    state.json and best.keras are written in the background) -> CSV, plots, MLflow (after the writes) -> epoch-change inference pictures -> the sweep trial's pruning (`report(epoch,
    objective) -> stop?`, from `flexseg.sweep.trial`).
    """
    c, t = cfg.callbacks, cfg.train
    if c.tiled_every < 1:
        raise FlexsegError(f"callbacks.tiled_every={c.tiled_every}; it must be at least 1 (1 = every epoch).")
    if c.pictures_share is not None and not 0 < c.pictures_share <= 1:
        raise FlexsegError(f"callbacks.pictures_share={c.pictures_share}; it must be in (0, 1], the share of "
                           "training time the epoch pictures may take, or null to picture every epoch.")
    mode = monitor_mode(c.monitor)
    stateful: dict[str, keras.callbacks.Callback] = {}
    if c.reduce_lr and t.lr_schedule != LRSchedule.constant:
        log.warning("callbacks.reduce_lr is ignored: train.lr_schedule=%s sets the learning rate every step",
                    t.lr_schedule)
    elif c.reduce_lr:
        stateful["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor=c.monitor, mode=mode, factor=c.reducer_factor, patience=c.reducer_patience,
            cooldown=c.reducer_cooldown, min_lr=c.min_lr, min_delta=c.min_delta, verbose=1)
    if c.checkpoint:
        stateful["best_checkpoint"] = BestCheckpoint(run_dir / "checkpoints" / "best.keras", c.monitor)
    if c.early_stopping:
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor=c.monitor, mode=mode, patience=c.patience, min_delta=c.min_delta, verbose=1)
    ckpt_dir = run_dir / "checkpoints" if c.last_checkpoint else None
    limit = TimeLimit(t.time_limit) if t.time_limit is not None else None
    recorder = EpochRecorder(state, stateful, ckpt_dir, log_lr=c.log_lr, time_limit=limit, last_every=c.last_every)
    cbs = [EpochTimer(), SignalStop(), *([limit] if limit else []), *stateful.values(), recorder]
    if c.csv_logs:
        cbs.append(CsvLogger(run_dir, recorder))
    if c.plots:
        cbs.append(CurvePlotter(run_dir, recorder, common.class_names(cfg)))
    if c.mlflow:
        cbs.append(MlflowLogger(recorder, tracking.log_metrics))
    # Pictures go to MLflow by step (the UI's slider) and as readable epoch_NNN.png files; a new run
    # starts with the untrained model's picture at step 0.
    log_image, log_file = (tracking.log_image, tracking.log_artifact) if c.mlflow else (None, None)
    pal, baseline = common.display_palette(cfg), state.epoch == 0
    budget = PictureBudget(c.pictures_share)  # shared: both kinds of pictures together
    if c.epoch_change_infer and c.num_infer_images > 0 and infer_ds is not None:
        images, targets = _sample_batch(infer_ds, c.num_infer_images)
        cbs.append(EpochInference(images, targets, pal, run_dir / "epoch_change_infer", log_image, log_file,
                                  baseline, budget))
    if c.epoch_change_tiled and tiled_image is not None:
        tl, pixels = cfg.tiling, read_pixels(tiled_image)  # read as training reads images
        cbs.append(EpochTiledInference(
            to_uint8(pixels), convert_image(pixels, common.read_options(cfg).image), pal,
            run_dir / "epoch_change_tiled", tl.tile_size, tl.overlap, tl.batch_size, tl.blend, log_image,
            every=c.tiled_every, log_file=log_file, baseline=baseline, budget=budget))
    if report is not None:
        cbs.append(TrialPruning(cfg.train.objective, report))
    return cbs


def epoch_infer_split(cfg: Config, valid: Split) -> Split:
    """The split `callbacks.epoch_change_infer` pictures: test, else (said in the log) validation."""
    try:
        return build_split(cfg.dataset, "test")
    except FlexsegError as err:  # the reference shows mini_test images; validation is the next best
        log.warning("callbacks.epoch_change_infer: no usable test split (%s); picturing validation images "
                    "instead", str(err).splitlines()[0])
        return valid


def _recorder(callbacks: list[keras.callbacks.Callback]) -> EpochRecorder:
    return next(cb for cb in callbacks if isinstance(cb, EpochRecorder))


def _summary(cfg: Config, state: TrainingState, run_dir: Path, log_to_run: bool = True) -> dict[str, float]:
    """Results of a training: best monitored value, and the objective with the metrics of its best epoch.

    `objective` is the best value of `train.objective` over the epochs; `best_val_*` are the validation
    metrics of that epoch (cross-validation averages them over folds). Also logged into the run.
    """
    monitor, metric = cfg.callbacks.monitor, cfg.train.objective
    best = (best_epoch(state.history, monitor, monitor_mode(monitor) == "max") or {}).get(monitor, float("nan"))
    maximize = resolve_direction(metric, cfg.train.objective_direction) == "maximize"
    row = best_epoch(state.history, metric, maximize) or {}
    results = {"epochs": float(state.epoch), "objective": row.get(metric, float("nan")),
               **{f"best_{k}": v for k, v in row.items() if k.startswith("val_")},
               f"best_{monitor}": best}  # the monitor's own best wins over its value at the objective's epoch
    if row:
        results["best_epoch"] = float(row["epoch"])
    if log_to_run and state.run_id and cfg.callbacks.mlflow:
        tracking.log_metrics_to(state.run_id, {k: v for k, v in results.items() if k != "epochs"})
    log.info("training done: %d epochs, best %s %.4f, objective (best %s) %.4f; outputs in %s", state.epoch,
             monitor, best, metric, results["objective"], run_dir)
    return results


def _start_or_resume(
    cfg: Config, ctx: RunContext, exp_id: str
) -> tuple[Path, TrainingState, Optional[ResumePoint]]:
    """(run dir, state, resume point): this call's dir and a fresh state, or those of the run to continue."""
    point = find_resume_point(cfg.train.resume, cfg.train.resume_dir, exp_id, cfg.tracking.experiment, ctx.config_yaml)
    if point is None:
        return ctx.run_dir, TrainingState(), None
    check_compatible(point.run_dir, ctx.config_yaml)
    log.info("resuming %s after epoch %d (MLflow run %s); this call's log is in %s", point.run_dir,
             point.state.epoch, point.state.run_id, ctx.run_dir)
    return point.run_dir, point.state, point


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Train one model (or continue one, `train.resume`); returns the best monitored value."""
    common.seed_everything(cfg.seed)
    dist = build_distribution(cfg.train.strategy)  # first: a multi-worker strategy precedes every TensorFlow op
    check_resume(dist, cfg.train.resume)
    common.prepare_dataset(cfg.dataset)
    m, t = cfg.model, cfg.train
    check_monitor(cfg, in_sweep=ctx.sweep is not None)
    if dist.is_chief:
        exp_id = common.open_tracking(cfg)
        run_dir, state, point = _start_or_resume(cfg, ctx, exp_id)
    else:  # trains like the chief, writes nothing (see worker_config), opens no MLflow run
        exp_id, run_dir, state, point, cfg = "", ctx.run_dir, TrainingState(), None, worker_config(cfg)
    if point is not None and state.finished:
        if state.stopped_early or state.epoch >= t.epochs:
            log.info("%s already finished (epoch %d of %d%s); nothing to resume", run_dir, state.epoch, t.epochs,
                     ", stopped early" if state.stopped_early else "")
            return _summary(cfg, state, run_dir, log_to_run=False)
        state.finished = False  # more epochs asked for: continue the finished run
    size = (m.image_height, m.image_width)
    pal, opts = common.palette(cfg), common.read_options(cfg)
    splits = dict(zip(("train", "valid"), build_training_splits(cfg.dataset, opts.mask)))  # or a k-fold fold
    log.info("dataset %s: %d train / %d valid pairs", cfg.dataset.name, len(splits["train"]), len(splits["valid"]))
    augment = build_augment(cfg.augment)  # the train split only
    batch = dist.global_batch(t.batch_size)  # train.batch_size is per replica
    log.info("strategy %s: global batch %d (train.batch_size=%d per replica)", dist.describe(), batch, t.batch_size)
    # One iterator for the whole fit (repeated datasets + steps per epoch): a new iterator every epoch
    # stalled each epoch start for seconds. Several workers keep Keras' own epoch ends (shards differ).
    whole = dist.cluster is None
    steps_per_epoch = t.steps_per_epoch or math.ceil(len(splits["train"]) / batch)
    validation_steps = t.validation_steps  # repeated, Keras' new iterator every epoch stalled for 1-6 s
    train_ds = build_dataset(splits["train"], pal, size, m.image_channels, m.num_classes, batch, shuffle=True,
                             seed=cfg.seed + state.epoch, repeat=t.steps_per_epoch is not None or whole,
                             shuffle_buffer=t.shuffle_buffer, augment=augment, options=opts, cache=cfg.dataset.cache,
                             shard=dist.shard())
    valid_ds = build_dataset(splits["valid"], pal, size, m.image_channels, m.num_classes, batch,
                             repeat=validation_steps is not None, options=opts, cache=cfg.dataset.cache,
                             shard=dist.shard())
    infer_ds = None
    if cfg.callbacks.epoch_change_infer and cfg.callbacks.num_infer_images > 0:
        infer_ds = build_dataset(epoch_infer_split(cfg, splits["valid"]), pal, size, m.image_channels,
                                 m.num_classes, 1, options=opts)

    lock = training_lock(run_dir) if dist.is_chief else contextlib.nullcontext()
    with lock, common.precision_policy(t.precision) as precision:
        with dist.strategy.scope():  # model, optimizer and metric variables; fit and callbacks run outside
            model = build_model(m)
            common.compile_model(model, cfg, common.build_training_optimizer(cfg, steps_per_epoch))
            if point is not None:
                restore_model(model, point)
        log.info("model %s: %.3f M parameters, precision %s%s", m.name, model.count_params() / 1e6, precision,
                 " (train.precision=auto)" if t.precision == "auto" else "")
        run_dir.mkdir(parents=True, exist_ok=True)
        tags = {**common.run_tags(cfg, "train", run_dir), "config_hash": config_hash(ctx.config_yaml),
                **fold_tags(cfg.dataset), "precision": str(precision), "devices": describe_devices(),
                "strategy": dist.describe()}
        name = None if point else tracking.run_name(cfg.tracking.experiment, "train", ctx.overrides)
        runs = tracking.start_run(exp_id, run_id=state.run_id, run_name=name, tags=None if point else tags,
                                  spool_dir=run_dir / tracking.SPOOL_DIR) if dist.is_chief else contextlib.nullcontext()
        with runs as run_id:
            state.run_id = run_id
            if dist.is_chief and point is None:
                records.record_new_run(cfg, ctx, run_dir, model, exp_id)
                tracking.log_params({"train.global_batch_size": str(batch)})
            elif dist.is_chief:
                records.record_resume(cfg, ctx, state, tags["git_commit"])
            report = _trial_reporter(ctx) if dist.cluster is None else None  # the chief alone cannot stop workers
            callbacks = build_callbacks(cfg, run_dir, state, infer_ds, tiled_image_path(cfg), report)
            with stopping.graceful(*resume.stop_notice(run_dir, ctx.overrides)):  # a signal: KILLED, exit 128+N
                model.fit(
                    train_ds, validation_data=valid_ds, epochs=state.epoch if state.stopped_early else t.epochs,
                    initial_epoch=state.epoch, steps_per_epoch=steps_per_epoch if (t.steps_per_epoch or whole) else None,
                    validation_steps=validation_steps, callbacks=callbacks, verbose=2, shuffle=False,  # tf.data shuffles
                )
            if dist.is_chief:
                records.log_final_model(model, run_dir)
        _recorder(callbacks).mark_finished()
    results = _summary(cfg, state, run_dir)  # train.export: `mode=export ckpt=runs:/<this run>`, the run finished
    return {**results, **(common.export_checkpoint(cfg, ctx, f"runs:/{state.run_id}") if t.export and dist.is_chief else {})}


def _trial_reporter(ctx: RunContext):  # type: ignore[no-untyped-def]
    """The Optuna trial's `(epoch, value) -> stop?` reporter when this job is a trial, else None."""
    job = ctx.sweep
    if job is None or job.trial is None:
        return None
    return TrialReporter(job.trial, job.pruner)
