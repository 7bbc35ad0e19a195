"""Typed configuration: one dataclass schema per config group, registered in Hydra's ConfigStore.

YAML files under ``conf/`` hold values; these dataclasses hold the shape. Because the root
``Config`` is typed, every group file (a built-in one or a user's ``dataset/NAME.yaml`` found
through ``--config-dir``) is merged into a typed node: an unknown key or a wrong type stops
composition, and so does a string choice outside its Enum (`flexseg.config.choices`, listing the
valid values); `flexseg.config.validation` adds the checks that span several groups. The `augment`
group's schemas live in `flexseg.config.augment`. No TensorFlow or MLflow import here: the CLI
composes configs in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from flexseg.config.augment import AugmentConfig
from flexseg.config.callbacks import CallbacksConfig
from flexseg.config.choices import (
    BadFilePolicy,
    Blend,
    ColorOrder,
    Direction,
    Interpolation,
    JitCompile,
    LRSchedule,
    MaskFormat,
    Mode,
    Normalization,
    OptimizerName,
    OutputFormat,
    Precision,
    Resume,
    Strategy,
    SplitName,
)


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
    base_kernels: int = 3
    num_layers: int = 6
    dropout_rate: float = 0.05
    dilation: int = 1
    # none | batch | instance | group; `true` means batch and `false` none, as in the reference.
    # instance: part of the default recipe (`make race`); the reference experiments set none.
    normalization: Normalization = Normalization.instance
    bn_momentum: float = 0.99
    activation: str = "relu"
    # Initializer of every convolution (a Keras name); the reference uses he_normal.
    kernel_initializer: str = "he_normal"
    # Standardise each input image per channel inside the model (zero mean, unit variance).
    input_normalize: bool = False


@dataclass
class ClassConfig:
    """One segmentation class: index = position in `dataset.classes`, 0 is background."""

    name: str = MISSING
    color: List[int] = MISSING
    # Colour of this class in written masks/overlays; None: `color` (reference: white -> green).
    display_color: Optional[List[int]] = None


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
    # Generate only when `dataset.root` is this folder (None: any empty or new folder). The default
    # dataset (no `dataset=NAME` chosen) sets its cache, data/synthetic; `dataset=synthetic` leaves it None.
    cache_root: Optional[str] = None


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
    # k-fold cross-validation: train+valid pooled and dealt into `folds` folds by pair key, stratified
    # by the classes each mask contains; fold `fold` validates. None: the train/valid splits as they are.
    folds: Optional[int] = None
    fold: int = 0
    fold_seed: int = 42  # not `seed`: a sweep over `seed` keeps the same folds
    # Masks: auto (palette PNG / 2-D npz -> index, else rgb) | rgb (nearest class colour) |
    # gray (blur, then `threshold` when `binarize`) | index (pixel value = class index).
    mask_format: MaskFormat = MaskFormat.auto
    # RGB distance to a class colour, or to the line between two (anti-aliased edges); beyond: unmatched.
    color_tolerance: float = 60.0
    max_unmatched: float = 0.01  # fraction of a mask's pixels allowed to be unmatched
    threshold: int = 80
    blur: int = 0
    binarize: bool = True
    # Images: RGB | BGR channel order, a cv2 COLOR_* conversion by name, gamma, resize method.
    color_order: ColorOrder = ColorOrder.RGB
    color_converter: Optional[str] = None
    gamma: Optional[float] = None
    image_interpolation: Interpolation = Interpolation.auto
    on_bad_file: BadFilePolicy = BadFilePolicy.error  # error | skip (warn once per file and leave the pair out)
    max_pixels: int = 2**28  # refuse larger images (decompression-bomb guard)
    cache: bool = False  # keep decoded pairs in memory after the first epoch
    synthetic: Optional[SyntheticConfig] = None


@dataclass
class PreviewConfig:
    """`mode=preview`: a grid of `count` augmented image / mask-overlay pairs of one split."""

    count: int = 16
    split: SplitName = SplitName.train
    columns: int = 4  # image/overlay pairs per grid row
    panel_size: int = 256  # longest side of each panel in the grid, pixels


@dataclass
class TrainConfig:
    # Defaults: the recipe that learned fastest at equal wall time (`make race`, README); the reference
    # experiments (experiments/*.yaml) state their own values.
    epochs: int = 20
    batch_size: int = 2
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    learning_rate: float = 3e-3
    optimizer: OptimizerName = OptimizerName.adam
    clipvalue: Optional[float] = None
    clipnorm: Optional[float] = None
    # None: the optimizer's default (adamw 0.004, none for adam/sgd).
    weight_decay: Optional[float] = None
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    # constant | cosine | polynomial (per step, down to end_learning_rate). ReduceLROnPlateau: callbacks.reduce_lr.
    lr_schedule: LRSchedule = LRSchedule.constant
    end_learning_rate: float = 0.0
    lr_power: float = 1.0  # polynomial exponent; 1 is linear
    # None: dice_ce_loss (cross-entropy + mean foreground soft dice; binary cross-entropy with one sigmoid output).
    loss: Optional[str] = None
    # Keyword arguments of the loss, e.g. {alpha: 0.3, beta: 0.7} for tversky_loss.
    loss_args: dict[str, float] = field(default_factory=dict)
    metrics: List[str] = field(default_factory=lambda: ["dice_coef_multiclass", "dice", "iou"])
    # File names are shuffled whole every epoch; with dataset.cache=true, later epochs reshuffle the
    # decoded pairs within a buffer of this many.
    shuffle_buffer: int = 256
    # auto: mixed_bfloat16 on CPUs with AMX-BF16 and GPUs of compute capability >= 8.0, mixed_float16 on
    # older GPUs, float32 otherwise (`flexseg mode=info` shows the choice) | float32 | mixed_float16 |
    # mixed_bfloat16. eval, infer and tiled run in the same policy; outputs stay float32.
    precision: Precision = Precision.auto
    # auto: mirrored over >= 2 local GPUs, multi_worker under TF_CONFIG or a SLURM job of several tasks,
    # else none | none | mirrored (all local GPUs, else all logical CPUs) | multi_worker (TF_CONFIG or SLURM).
    # batch_size stays per replica: the global batch is batch_size x replicas.
    strategy: Strategy = Strategy.auto
    # auto (Keras decides: XLA on GPU, off on CPU) | true | false.
    jit_compile: JitCompile = JitCompile.auto
    # false | true (resume the newest run of this experiment, or resume_dir) | auto (resume it if unfinished).
    resume: Resume = Resume.false
    # A training run dir holding checkpoints/state.json; None: the newest one, found through MLflow.
    resume_dir: Optional[str] = None
    # Wall-clock seconds this call may train (None: no limit). Checked after every step: the epoch in
    # progress ends there, then validates, checkpoints and logs as usual. For equal-time comparisons.
    time_limit: Optional[float] = None
    # What a sweep optimises: the best value over the epochs of this logged metric (val_dice: mean
    # foreground dice on the validation split). Every mode returns its counterpart (eval: test dice).
    objective: str = "val_dice"
    # auto: maximize scores (dice, iou, ...), minimize losses | maximize | minimize.
    objective_direction: Direction = Direction.auto
    export: bool = False  # at the end, what `mode=export ckpt=runs:/<this run>` writes (SavedModel, MLflow model, card)


@dataclass
class TilingConfig:
    """Sliding-window inference (`mode=tiled`, the epoch-change tiled callback)."""

    # None: `<root>/large/images` when it exists, else the test images.
    images_dir: Optional[str] = None
    masks_dir: Optional[str] = None
    output_dir: Optional[str] = None
    # May differ from the training size (the model is rebuilt for it): a multiple of 2**(num_layers-1).
    tile_size: int = 256
    # Pixels shared by neighbouring tiles (whole number), or a fraction of tile_size when < 1.
    overlap: float = 64
    batch_size: int = 4
    blend: Blend = Blend.gaussian  # gaussian (nnU-Net, sigma = tile/8) | constant
    tta: bool = False  # average the 4 flips of every tile (4x the model time)
    save_probabilities: bool = False  # probabilities/NAME.tif, uint8 round(255 * p), K channels
    # auto: TIFF (tiled, zlib, streamed) for TIFF inputs and images above 8192x8192 px, else PNG.
    output_format: OutputFormat = OutputFormat.auto


@dataclass
class StatsConfig:
    """`mode=stats`: which splits to check, and how many files to decode at once."""

    splits: List[SplitName] = field(default_factory=lambda: [SplitName.train, SplitName.valid, SplitName.test])
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
    artifact_location: Optional[str] = None  # None: `mlartifacts/` beside the sqlite file
    register_as: Optional[str] = None  # mode=export / train.export: a new version of this registered model


@dataclass
class SyncConfig:
    """`mode=sync`: upload what training runs spooled while the tracking server was unreachable."""

    # A run dir (or a folder of run dirs) holding spools; None: every spool under outputs/ and multirun/.
    path: Optional[str] = None


@dataclass
class Config:
    mode: Mode = Mode.train
    seed: int = 42
    # A .keras path, `runs:/<run_id>`, `models:/NAME/VERSION` | `models:/NAME@ALIAS`, or `latest` (newest training run).
    ckpt: str = "latest"
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
