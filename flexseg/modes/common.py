"""Pieces every mode runner shares: seeding, dataset preparation, compile, checkpoint resolution."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Iterator

import keras
import numpy as np

from flexseg import tracking
from flexseg.config.choices import JitCompile, Precision
from flexseg.config.schemas import Config, DatasetConfig
from flexseg.context import RunContext
from flexseg.data.masks import build_palette
from flexseg.data.pipeline import ReadOptions
from flexseg.data.readers import options_from_config
from flexseg.data.synthetic import build_synthetic_dataset
from flexseg.errors import FlexsegError
from flexseg.export.bundle import export_model
from flexseg.inference.checkpoint import load_model_file
from flexseg.inference.ensemble import build_ensemble
from flexseg.inference.predict import with_policy
from flexseg.tracking.export import fetch_registered_checkpoint
from flexseg.training.devices import resolve_precision
from flexseg.training.losses import get_loss
from flexseg.training.metrics import build_metrics
from flexseg.training.optimizers import build_optimizer, build_schedule

log = logging.getLogger(__name__)
MAX_LOGGED = 16  # infer/tiled outputs copied into MLflow; the folder holds them all


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy and TensorFlow from the config's one `seed`."""
    keras.utils.set_random_seed(seed)


def prepare_dataset(cfg: DatasetConfig) -> None:
    """Generate the embedded synthetic dataset into `cfg.root` when the config asks for it.

    Raises:
        FlexsegError: when no dataset was chosen (the default dataset, `synthetic.cache_root` set) but
            `dataset.root` names another folder or `dataset.classes` other classes: that is the user's
            own data, never to be filled with (or trained as) synthetic images.
    """
    spec = cfg.synthetic
    if spec is None:
        return
    own_root = spec.cache_root is not None and Path(cfg.root).resolve() != Path(spec.cache_root).resolve()
    if own_root or (spec.cache_root is not None and len(cfg.classes) != 4):
        what = f"dataset.root={cfg.root}" if own_root else f"dataset.classes lists {len(cfg.classes)} classes"
        raise FlexsegError(
            f"{what}, but no dataset is chosen: the default dataset is the embedded synthetic one, which "
            f"flexseg generates only into {spec.cache_root}. For your own data choose its YAML: dataset=NAME "
            "(conf/dataset/NAME.yaml), or write DIR/dataset/NAME.yaml (root and classes) and run "
            "flexseg --config-dir DIR dataset=NAME. To generate the synthetic dataset into another folder, "
            "choose it: dataset=synthetic dataset.root=FOLDER."
        )
    build_synthetic_dataset(Path(cfg.root), spec, [tuple(c.color) for c in cfg.classes])


def class_names(cfg: Config) -> list[str]:
    return [c.name for c in cfg.dataset.classes]


def palette(cfg: Config):  # type: ignore[no-untyped-def]
    """(K, 3) uint8 class colours of the masks (decoding)."""
    return build_palette(cfg.dataset.classes)


def display_palette(cfg: Config):  # type: ignore[no-untyped-def]
    """(K, 3) uint8 colours for written masks and overlays (`display_color`, else the mask colour)."""
    return np.asarray([c.display_color or c.color for c in cfg.dataset.classes], dtype=np.uint8)


def read_options(cfg: Config) -> ReadOptions:
    """How this config's dataset files become model input (formats, colours, tolerance, bad-file policy)."""
    image, mask = options_from_config(cfg.dataset, cfg.model.image_channels)
    return ReadOptions(image, mask, cfg.dataset.max_unmatched, cfg.dataset.on_bad_file)


def jit_compile_option(value: JitCompile) -> bool | str:
    """`train.jit_compile` -> the `model.compile(jit_compile=...)` argument."""
    return {JitCompile.auto: "auto", JitCompile.true: True, JitCompile.false: False}[JitCompile(value)]


@contextlib.contextmanager
def precision_policy(name: Precision) -> Iterator[Precision]:
    """Set Keras's global dtype policy (`train.precision`, auto resolved) while building or loading a model.

    Yields the concrete policy. mixed_float16 / mixed_bfloat16 compute in 16 bits and keep variables in
    float32 (Keras wraps the optimizer in a LossScaleOptimizer for float16); the model's output
    layer stays float32. `auto` picks bf16 on AMX-BF16 CPUs and Ampere+ GPUs (`devices.auto_precision`).
    """
    resolved = resolve_precision(name)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(resolved.value)
    try:
        yield resolved
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_training_optimizer(cfg: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of `train.*` with its learning-rate schedule over `epochs x steps_per_epoch` steps."""
    t = cfg.train
    rate = build_schedule(t.lr_schedule, t.learning_rate, t.epochs * steps_per_epoch, t.end_learning_rate,
                          t.lr_power)
    return build_optimizer(t.optimizer, rate, t.clipvalue, t.clipnorm, t.weight_decay, t.momentum, t.nesterov)


def loss_name(cfg: Config) -> str:
    """`train.loss`, or the default recipe's Dice + cross-entropy (softmax or one sigmoid output alike)."""
    return cfg.train.loss or "dice_ce_loss"


def compile_model(model: keras.Model, cfg: Config, optimizer: keras.optimizers.Optimizer | None = None) -> keras.Model:
    """Compile with the configured loss, metrics and XLA option.

    Args:
        model: The model to compile.
        cfg: Validated config (`train.loss`, `train.loss_args`, `train.metrics`, `train.jit_compile`).
        optimizer: The training optimizer (`build_training_optimizer`); None builds `train.optimizer`
            at a constant rate, enough for evaluation.
    """
    t = cfg.train
    if optimizer is None:
        optimizer = build_optimizer(t.optimizer, t.learning_rate, t.clipvalue, t.clipnorm, t.weight_decay,
                                    t.momentum, t.nesterov)
    model.compile(
        optimizer=optimizer,
        loss=get_loss(loss_name(cfg), t.loss_args),
        metrics=build_metrics(t.metrics, cfg.model.num_classes, class_names(cfg)),
        jit_compile=jit_compile_option(t.jit_compile),
    )
    return model


def open_tracking(cfg: Config) -> str:
    """Connect to the MLflow store of the config (uploading first what runs here spooled for it); returns
    the experiment id."""
    exp_id = tracking.setup(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    tracking.upload_pending(cfg.tracking.uri)
    return exp_id


def _run_checkpoint(run_id: str) -> Path:
    """The best checkpoint of a training run: its own folder when on this machine, else fetched from MLflow."""
    local = Path(tracking.run_tag(run_id, "run_dir") or "/nonexistent") / "checkpoints" / "best.keras"
    return local if local.is_file() else tracking.fetch_checkpoint(run_id)


def resolve_checkpoint(ckpt: str, experiment_id: str, experiment: str) -> tuple[dict[str, Path], str | None]:
    """`ckpt` (path | runs:/<id> | latest) -> ({name: local .keras path}, run id or None).

    One checkpoint, named by its run id (or its path); for a run with no checkpoint of its own whose
    FINISHED child training runs are the folds of a cross-validation sweep, each fold's, by run id;
    for the parent run of another sweep, its best run's (`best_run_id`).

    Raises:
        FlexsegError: when no checkpoint can be found.
    """
    run_id: str | None = None
    if ckpt == "latest":
        run_id = tracking.find_latest_training_run(experiment_id)
        if run_id is None:
            raise FlexsegError(
                f"ckpt=latest: the MLflow experiment '{experiment}' has no finished training run. "
                "Train first (flexseg mode=train ...), or pass ckpt=path/to/model.keras or ckpt=runs:/<run_id>."
            )
    elif ckpt.startswith("runs:/"):
        run_id = ckpt[len("runs:/") :].strip("/").split("/")[0]
    elif ckpt.startswith("models:/"):  # a registered export: its Keras file, and the run it was logged into
        path, run_id = fetch_registered_checkpoint(ckpt)
        return {ckpt: path}, run_id
    if run_id is None:
        return {ckpt: Path(ckpt)}, None  # load_model_file names what it is when it is not a model
    try:
        return {run_id: _run_checkpoint(run_id)}, run_id
    except FlexsegError:
        best = tracking.run_tag(run_id, "best_run_id")
        folds = tracking.child_training_runs(run_id)
        if best and not tracking.run_tag(run_id, "cv_folds"):  # a search's parent run: its best trial
            log.info("ckpt=runs:/%s is a sweep; using its best run %s", run_id, best)
            return {best: _run_checkpoint(best)}, best
        if not folds:
            raise
    log.info("ensemble of %d fold models (runs %s)", len(folds), ", ".join(folds))
    return {fold: _run_checkpoint(fold) for fold in folds}, run_id


def run_tags(cfg: Config, mode: str, run_dir: Path) -> dict[str, str]:
    return {
        "mode": mode,
        "experiment": cfg.tracking.experiment,
        "dataset": cfg.dataset.name,
        "git_commit": tracking.git_commit(),
        "run_dir": str(run_dir.resolve()),
    }


@contextlib.contextmanager
def evaluation_run(cfg: Config, mode: str, ctx: RunContext, exp_id: str, train_run_id: str | None) -> Iterator[str]:
    """The MLflow run that eval/infer/tiled log into; yields its id.

    For a checkpoint of a training run it is a child of that run (`mlflow.parentRunId`): the
    training run is never reopened, so a failure here cannot change its status (`ckpt=latest` keeps
    finding it). For a checkpoint file it is a run of its own. Named `<experiment>/<mode> <overrides> <time>`.
    """
    name = tracking.run_name(cfg.tracking.experiment, mode, ctx.overrides)
    with tracking.start_run(exp_id, run_name=name, tags=run_tags(cfg, mode, ctx.run_dir),
                            parent_run_id=train_run_id) as run_id:
        log.info("MLflow run %s; in the UI (make ui): http://127.0.0.1:5000/%s", run_id,
                 tracking.ui_route(exp_id, run_id))
        yield run_id


def load_for_config(cfg: Config) -> tuple[keras.Model, Path, str | None, str]:
    """Resolve `cfg.ckpt`, load the model and check it predicts the config's classes.

    A cross-validation parent run (`ckpt=runs:/<parent_id>`) gives the ensemble of its fold models
    (`flexseg.inference.ensemble.build_ensemble`: the mean of their probabilities).

    Returns:
        (model, checkpoint path (the first fold model's for an ensemble), training (or parent) run id
        or None, experiment id)
    """
    exp_id = open_tracking(cfg)
    checkpoints, run_id = resolve_checkpoint(cfg.ckpt, exp_id, cfg.tracking.experiment)
    model = build_ensemble({name: load_model_file(file) for name, file in checkpoints.items()})
    precision = resolve_precision(cfg.train.precision)
    model = with_policy(model, precision.value)  # the policy of this machine's train.precision
    path = next(iter(checkpoints.values()))
    outputs = int(model.output_shape[-1])
    if outputs != cfg.model.num_classes:
        raise FlexsegError(
            f"The checkpoint '{path}' predicts {outputs} class channel(s), but the config expects "
            f"{cfg.model.num_classes} (dataset '{cfg.dataset.name}'). Use the dataset/experiment it was trained with."
        )
    log.info("model: %s%s, precision %s", path, f" (MLflow run {run_id})" if run_id else "", precision)
    return model, path, run_id, exp_id


def export_checkpoint(cfg: Config, ctx: RunContext, ckpt: str | None = None) -> dict[str, float]:
    """`mode=export` of `ckpt` (default `cfg.ckpt`); `train.export=true` runs it on the run it trained.

    Files go beside the checkpoint (`flexseg.export.bundle`), the MLflow model into the checkpoint's
    training run (a checkpoint without one: into this call's run); a child run tagged mode=export
    records the call.
    """
    cfg = dataclasses.replace(cfg, ckpt=ckpt) if ckpt is not None else cfg
    model, path, run_id, exp_id = load_for_config(cfg)
    with evaluation_run(cfg, "export", ctx, exp_id, run_id) as own_run_id:
        result = export_model(cfg, model, path, run_id or own_run_id, run_id, ctx.run_dir)
        tracking.set_tags({"model_uri": result.model_uri, "export_dir": str(result.folder)})
    return {"registered_version": float(result.version)} if result.version else {}
