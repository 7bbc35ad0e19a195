"""Pieces every mode runner shares: seeding, dataset preparation, compile, checkpoint resolution."""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from flexseg import tracking
from flexseg.config import Config, DatasetConfig
from flexseg.data.masks import build_palette
from flexseg.data.synthetic import build_synthetic_dataset
from flexseg.errors import FlexsegError
from flexseg.losses import get_loss
from flexseg.metrics import build_metrics

log = logging.getLogger(__name__)

OPTIMIZERS = {"adam": keras.optimizers.Adam}


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy and TensorFlow from the config's one `seed`."""
    keras.utils.set_random_seed(seed)


def prepare_dataset(cfg: DatasetConfig) -> None:
    """Generate the embedded synthetic dataset into `cfg.root` when the config asks for it."""
    if cfg.synthetic is not None:
        build_synthetic_dataset(Path(cfg.root), cfg.synthetic, [tuple(c.color) for c in cfg.classes])


def class_names(cfg: Config) -> list[str]:
    return [c.name for c in cfg.dataset.classes]


def palette(cfg: Config):  # type: ignore[no-untyped-def]
    return build_palette(cfg.dataset.classes)


def compile_model(model: keras.Model, cfg: Config) -> keras.Model:
    """Compile with the configured optimizer, loss (default by output count) and metrics."""
    t = cfg.train
    if t.optimizer not in OPTIMIZERS:
        raise FlexsegError(f"train.optimizer='{t.optimizer}' is unknown; available: {', '.join(OPTIMIZERS)}.")
    kwargs = {"learning_rate": t.learning_rate}
    if t.clipvalue is not None:
        kwargs["clipvalue"] = t.clipvalue
    num_outputs = cfg.model.num_classes
    loss = t.loss or ("bce_dice_loss" if num_outputs == 1 else "categorical_crossentropy")
    model.compile(
        optimizer=OPTIMIZERS[t.optimizer](**kwargs),
        loss=get_loss(loss),
        metrics=build_metrics(t.metrics, num_outputs, class_names(cfg)),
    )
    return model


def open_tracking(cfg: Config) -> str:
    """Connect to the MLflow store of the config; returns the experiment id."""
    return tracking.setup(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_location)


def resolve_checkpoint(ckpt: str, experiment_id: str, experiment: str) -> tuple[Path, str | None]:
    """`ckpt` (path | runs:/<id> | latest) -> (local .keras path, training run id or None).

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
    if run_id is not None:
        # The training run's own folder when it is on this machine, else a copy from the artifact store.
        local = Path(tracking.run_tag(run_id, "run_dir") or "/nonexistent") / "checkpoints" / "best.keras"
        return (local if local.is_file() else tracking.fetch_checkpoint(run_id)), run_id
    path = Path(ckpt)
    if not path.is_file():
        raise FlexsegError(f"ckpt='{ckpt}': no such file. Give a .keras file, runs:/<run_id> or latest.")
    return path, None


def load_checkpoint(path: Path) -> keras.Model:
    """Load a `.keras` model safely (no arbitrary code: safe_mode=True), uncompiled."""
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises ValueError/OSError/zip errors for bad files
        raise FlexsegError(f"Cannot load the model '{path}': {err}. Is it a .keras file written by flexseg?") from err


def model_input_size(model: keras.Model) -> tuple[int, int, int]:
    """(height, width, channels) the loaded model was built for."""
    _, h, w, c = model.input_shape
    return int(h), int(w), int(c)


def run_tags(cfg: Config, mode: str, run_dir: Path) -> dict[str, str]:
    return {
        "mode": mode,
        "experiment": cfg.tracking.experiment,
        "dataset": cfg.dataset.name,
        "git_commit": tracking.git_commit(),
        "run_dir": str(run_dir.resolve()),
    }


def with_input_size(model: keras.Model, height: int, width: int) -> keras.Model:
    """The same fully convolutional model (shared weights) rebuilt for another input size."""
    if model_input_size(model)[:2] == (height, width):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            shape = list(layer["config"]["batch_shape"])
            shape[1:3] = [height, width]
            layer["config"]["batch_shape"] = tuple(shape)
    resized = model.__class__.from_config(config)
    resized.set_weights(model.get_weights())
    return resized
