"""Typed configuration: one dataclass schema per config group, registered in Hydra's ConfigStore.

YAML files under ``conf/`` hold values; these dataclasses hold the shape. Because the root
``Config`` is typed, every group file (a built-in one or a user's ``dataset/NAME.yaml`` found
through ``--config-dir``) is merged into a typed node: an unknown key or a wrong type stops
composition. ``validate_config`` adds the checks that span several groups.

This module imports neither TensorFlow nor MLflow: the CLI composes configs in about a second.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, List, Optional, get_args, get_origin, get_type_hints

from omegaconf import MISSING

from flexseg.errors import FlexsegError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

NORMALIZATIONS = ("none", "batch", "instance", "group")


class Mode(enum.Enum):
    """What one `flexseg` call does."""

    train = "train"
    eval = "eval"
    infer = "infer"
    tiled = "tiled"
    stats = "stats"
    preview = "preview"


@dataclass
class ModelConfig:
    """FlexUNet knobs; names follow the reference INI `[model]` section."""

    name: str = "flexunet"
    image_height: int = 256
    image_width: int = 256
    image_channels: int = 3
    # None: one output per entry of dataset.classes (softmax). 1: binary (sigmoid), needs 2 classes.
    num_classes: Optional[int] = None
    base_filters: int = 16
    base_kernels: int = 5
    num_layers: int = 6
    dropout_rate: float = 0.05
    dilation: int = 1
    # none | batch | instance | group; `true` means batch and `false` none, as in the reference.
    normalization: str = "none"
    bn_momentum: float = 0.99
    activation: str = "relu"
    # Standardise each input image per channel inside the model (zero mean, unit variance).
    input_normalize: bool = False


@dataclass
class ClassConfig:
    """One segmentation class: index = position in `dataset.classes`, 0 is background."""

    name: str = MISSING
    color: List[int] = MISSING


@dataclass
class SyntheticConfig:
    """Parameters of the embedded synthetic dataset (generated into `dataset.root`)."""

    seed: int = 42
    image_size: int = 128
    num_train: int = 96
    num_valid: int = 16
    num_test: int = 16
    num_large: int = 2
    large_size: int = 1024


@dataclass
class DatasetConfig:
    """Where the images and masks are and what the mask colours mean.

    Split paths default to `<root>/<split>/{images,masks}` (or `<root>/<split>/*/{images,masks}`,
    per-class subfolders, when that is the layout found); each may be a folder or a glob of folders
    (`train/*/images`), absolute or relative to `root`. Images and masks pair by the folder parts the
    glob matched plus the file stem, never by sort order.
    """

    name: str = "custom"
    root: str = MISSING
    classes: List[ClassConfig] = MISSING
    train_images: Optional[str] = None
    train_masks: Optional[str] = None
    valid_images: Optional[str] = None
    valid_masks: Optional[str] = None
    test_images: Optional[str] = None
    test_masks: Optional[str] = None
    # Masks: auto (palette PNG / 2-D npz -> index, else rgb) | rgb (nearest class colour) |
    # gray (blur, then `threshold` when `binarize`) | index (pixel value = class index).
    mask_format: str = "auto"
    color_tolerance: float = 60.0  # RGB distance; farther pixels count as unmatched
    max_unmatched: float = 0.01  # fraction of a mask's pixels allowed to be unmatched
    threshold: int = 80
    blur: int = 0
    binarize: bool = True
    # Images: RGB | BGR channel order, a cv2 COLOR_* conversion by name, gamma, resize method.
    color_order: str = "RGB"
    color_converter: Optional[str] = None
    gamma: Optional[float] = None
    image_interpolation: str = "auto"
    on_bad_file: str = "error"  # error | skip (warn once per file and leave the pair out)
    max_pixels: int = 2**28  # refuse larger images (decompression-bomb guard)
    cache: bool = False  # keep decoded pairs in memory after the first epoch
    synthetic: Optional[SyntheticConfig] = None


@dataclass
class AugmentConfig:
    """Online augmentation. Only `none` exists so far (the augment group grows in issue 4)."""

    name: str = "none"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 4
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    learning_rate: float = 1e-4
    optimizer: str = "adam"
    clipvalue: Optional[float] = None
    # None: categorical_crossentropy (multi-class) or bce_dice_loss (binary).
    loss: Optional[str] = None
    metrics: List[str] = field(default_factory=lambda: ["dice_coef_multiclass", "dice"])
    shuffle_buffer: int = 256


@dataclass
class CallbacksConfig:
    monitor: str = "val_loss"
    checkpoint: bool = True
    early_stopping: bool = True
    patience: int = 10
    reduce_lr: bool = True
    reducer_factor: float = 0.5
    reducer_patience: int = 4
    min_lr: float = 0.0
    epoch_change_infer: bool = True
    num_infer_images: int = 4


@dataclass
class TilingConfig:
    # None: `<root>/large/images` when it exists, else the test images.
    images_dir: Optional[str] = None
    masks_dir: Optional[str] = None
    output_dir: Optional[str] = None
    tile_size: int = 256
    overlap: int = 64
    batch_size: int = 4
    blend: str = "gaussian"


@dataclass
class StatsConfig:
    """`mode=stats`: which splits to check, and how many files to decode at once."""

    splits: List[str] = field(default_factory=lambda: ["train", "valid", "test"])
    workers: int = 4


@dataclass
class InferConfig:
    # None: the test images of the dataset.
    images_dir: Optional[str] = None
    output_dir: Optional[str] = None
    batch_size: int = 4


@dataclass
class TrackingConfig:
    # Relative sqlite paths are resolved against the directory flexseg was started from.
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "${dataset.name}"
    # None: `mlartifacts/` beside the sqlite file.
    artifact_location: Optional[str] = None


@dataclass
class Config:
    mode: Mode = Mode.train
    seed: int = 42
    # A .keras path, `runs:/<run_id>`, or `latest` (newest finished training run of the experiment).
    ckpt: str = "latest"
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


GROUPS = ("model", "dataset", "augment", "callbacks", "tiling", "experiment")


def register_configs() -> None:
    """Register the root schema and the experiment recipes in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # `experiments/` is the `experiment` group (package _global_), without a second conf tree.
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        cs.store(group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_")


# --------------------------------------------------------------------------- key checks


def _schema_of(tp: Any) -> Any:
    """Unwrap Optional[...] to the dataclass inside, if any."""
    if get_origin(tp) is not None and type(None) in get_args(tp):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


def schema_keys(schema: type = Config, prefix: str = "") -> dict[str, Any]:
    """Flatten a dataclass schema into {dotted key: type}, descending into nested dataclasses."""
    out: dict[str, Any] = {}
    hints = get_type_hints(schema)
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        tp = _schema_of(hints[f.name])
        out[key] = tp
        if is_dataclass(tp):
            out.update(schema_keys(tp, key + "."))
    return out


def check_override_key(key: str) -> None:
    """Raise FlexsegError naming `key` and the closest valid key when the schema lacks it.

    Group selections (`dataset=lizard`), list items (`dataset.classes.0.name`) and Hydra's own
    keys are accepted; anything else must be a field of the schema.
    """
    if key.startswith("hydra") or key in GROUPS:
        return
    known = schema_keys()
    parts = key.split(".")
    for i in range(1, len(parts) + 1):
        head = ".".join(parts[:i])
        if head not in known:
            break
        if not is_dataclass(known[head]):
            return  # a leaf, or a list/dict whose items Hydra checks itself
    else:
        return
    parent = ".".join(parts[: i - 1])
    siblings = [k for k in known if k.rsplit(".", 1)[0] == parent and "." in k] if parent else [
        k for k in known if "." not in k
    ]
    candidates = difflib.get_close_matches(head, siblings, n=1, cutoff=0.6)
    if not candidates:  # a leaf put at the wrong level, e.g. `epochs=3` for `train.epochs=3`
        leaf = parts[-1]
        candidates = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f" Did you mean '{candidates[0]}'?" if candidates else ""
    valid = ", ".join(s.rsplit(".", 1)[-1] for s in siblings)
    where = f"'{parent}'" if parent else "the top level"
    raise FlexsegError(
        f"Unknown config key '{key}': '{parts[i - 1]}' is not a key of {where}.{hint} "
        f"Valid keys there: {valid}."
    )


# --------------------------------------------------------------------------- cross-field checks


def validate_config(cfg: Config) -> Config:
    """Check values that span groups; resolve `model.num_classes` and `model.normalization`.

    Raises:
        FlexsegError: naming the key at fault and what to do.
    """
    classes = cfg.dataset.classes
    n = len(classes)
    if n < 2:
        raise FlexsegError(
            f"dataset.classes lists {n} class(es); list the background first and at least one "
            "foreground class, e.g. [{name: background, color: [0,0,0]}, {name: cell, color: [255,255,255]}]."
        )
    for i, c in enumerate(classes):
        if len(c.color) != 3 or not all(0 <= v <= 255 for v in c.color):
            raise FlexsegError(
                f"dataset.classes[{i}] ('{c.name}') has color {list(c.color)}; give [R, G, B] with values 0..255."
            )
    names = [c.name for c in classes]
    colors = [tuple(c.color) for c in classes]
    for label, items in (("name", names), ("color", colors)):
        dups = sorted({str(x) for x in items if items.count(x) > 1})
        if dups:
            raise FlexsegError(f"dataset.classes has duplicate {label}(s) {', '.join(dups)}; each class needs its own.")
    m = cfg.model
    if m.num_classes is None:
        m.num_classes = n
    elif m.num_classes == 1 and n != 2:
        raise FlexsegError(
            f"model.num_classes=1 (binary, sigmoid) needs exactly 2 entries in dataset.classes, got {n}."
        )
    elif m.num_classes not in (1, n):
        raise FlexsegError(
            f"model.num_classes={m.num_classes} does not match the {n} entries of dataset.classes "
            f"({', '.join(names)}); set model.num_classes={n} (or 1 for a binary model), or leave it unset."
        )
    norm = str(m.normalization).lower()
    norm = {"true": "batch", "false": "none"}.get(norm, norm)
    if norm not in NORMALIZATIONS:
        raise FlexsegError(f"model.normalization='{m.normalization}' is unknown; use one of {', '.join(NORMALIZATIONS)}.")
    m.normalization = norm
    if m.num_layers < 2:
        raise FlexsegError(f"model.num_layers={m.num_layers}; a UNet needs at least 2 levels.")
    step = 2 ** (m.num_layers - 1)
    for key, size in (("image_height", m.image_height), ("image_width", m.image_width)):
        if size <= 0 or size % step:
            raise FlexsegError(
                f"model.{key}={size} is not divisible by 2**(num_layers-1)={step} (num_layers={m.num_layers}); "
                f"use a multiple of {step}, e.g. {max(step, round(size / step) * step)}, or fewer layers."
            )
    t = cfg.tiling
    if t.tile_size % step:
        raise FlexsegError(
            f"tiling.tile_size={t.tile_size} is not divisible by 2**(num_layers-1)={step}; use a multiple of {step}."
        )
    if not 0 <= t.overlap < t.tile_size:
        raise FlexsegError(
            f"tiling.overlap={t.overlap} must be >= 0 and smaller than tiling.tile_size={t.tile_size}."
        )
    for key, value in (
        ("train.batch_size", cfg.train.batch_size),
        ("infer.batch_size", cfg.infer.batch_size),
        ("tiling.batch_size", t.batch_size),
        ("train.epochs", cfg.train.epochs),
    ):
        if value < 1:
            raise FlexsegError(f"{key}={value}; it must be at least 1.")
    return cfg
