"""The string choices of the config as Enums: a bad value stops composition, listing the valid ones.

OmegaConf matches a YAML or command-line string to a member *name* (`tiling.blend=gausian` fails with
"Invalid value 'gausian', expected one of [gaussian, constant]"), so names are what users type and
values repeat them. `Choice` members are also `str` (equal to, and hashing as, their value) and
print as their value, so log lines, file names and library functions that take plain strings keep
working; code compares against the members. No TensorFlow or MLflow import here.
"""

from __future__ import annotations

import enum
from typing import Any


class Choice(str, enum.Enum):
    """A string choice of the config; `str(member)` and f-strings give its value."""

    def __str__(self) -> str:
        return str(self.value)


class Normalization(Choice):
    """`model.normalization`; `true` / `false` (the reference INI's booleans) mean batch / none."""

    none = "none"
    batch = "batch"
    instance = "instance"
    group = "group"
    true = "batch"
    false = "none"


class MaskFormat(Choice):
    """`dataset.mask_format`: auto (palette PNG / 2-D npz -> index, else rgb) | rgb | gray | index."""

    auto = "auto"
    rgb = "rgb"
    gray = "gray"
    index = "index"


class BadFilePolicy(Choice):
    """`dataset.on_bad_file`: error (stop, listing every problem) | skip (warn and leave the pair out)."""

    error = "error"
    skip = "skip"


class ColorOrder(Choice):
    """`dataset.color_order` of the model input; lower case accepted as before."""

    RGB = "RGB"
    BGR = "BGR"
    rgb = "RGB"
    bgr = "BGR"


class Interpolation(Choice):
    """`dataset.image_interpolation`: auto (area when shrinking, bilinear when enlarging) | area | bilinear."""

    auto = "auto"
    area = "area"
    bilinear = "bilinear"


class FillMode(Choice):
    """`augment.fill_mode` of geometric ops: constant (image 0, mask background) | reflect."""

    constant = "constant"
    reflect = "reflect"


class Blend(Choice):
    """`tiling.blend`: gaussian (nnU-Net importance map, sigma = tile/8) | constant."""

    gaussian = "gaussian"
    constant = "constant"


class OutputFormat(Choice):
    """`tiling.output_format`: auto (TIFF for TIFF input or > 8192x8192 px, else PNG) | png | tiff."""

    auto = "auto"
    png = "png"
    tiff = "tiff"


class OptimizerName(Choice):
    """`train.optimizer`."""

    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class LRSchedule(Choice):
    """`train.lr_schedule`: constant | cosine | polynomial (per step, down to end_learning_rate)."""

    constant = "constant"
    cosine = "cosine"
    polynomial = "polynomial"


class Precision(Choice):
    """`train.precision`: Keras's dtype policy of training and inference; auto picks from the devices."""

    auto = "auto"
    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


class Strategy(Choice):
    """`train.strategy`: how training spreads over devices (tf.distribute); auto picks from the devices."""

    auto = "auto"
    none = "none"
    mirrored = "mirrored"
    multi_worker = "multi_worker"


class JitCompile(Choice):
    """`train.jit_compile`: auto (Keras decides: XLA on GPU, off on CPU) | true | false."""

    auto = "auto"
    true = "true"
    false = "false"


class Resume(Choice):
    """`train.resume`: false | true (resume the newest run, or resume_dir) | auto (only if unfinished)."""

    false = "false"
    true = "true"
    auto = "auto"


class Direction(Choice):
    """`train.objective_direction`: auto (maximize scores such as dice/iou, minimize losses) | maximize | minimize."""

    auto = "auto"
    maximize = "maximize"
    minimize = "minimize"


class SplitName(Choice):
    """A dataset split (`preview.split`, `stats.splits`)."""

    train = "train"
    valid = "valid"
    test = "test"


def accept_bool_choices() -> None:
    """Let a YAML / command-line boolean pick the member named `true` / `false` of a `Choice`.

    `train.resume=true` (and `resume: true` in a YAML file) reaches OmegaConf as the bool True,
    which its `EnumNode` rejects outright: it matches strings to member names and ints to values,
    never bools. This wraps that converter so a bool becomes the string 'true' / 'false' for our
    `Choice` enums (a choice without such a member still fails, listing its valid names); other
    enums and values are left to OmegaConf. Idempotent; `register_configs` calls it.
    """
    from omegaconf.nodes import EnumNode

    convert = EnumNode.validate_and_convert_to_enum
    if getattr(convert, "accepts_bool_choices", False):
        return

    def validate_and_convert_to_enum(enum_type: type[enum.Enum], value: Any) -> enum.Enum:
        if isinstance(value, bool) and issubclass(enum_type, Choice):
            value = str(value).lower()
        return convert(enum_type=enum_type, value=value)

    validate_and_convert_to_enum.accepts_bool_choices = True  # type: ignore[attr-defined]
    EnumNode.validate_and_convert_to_enum = staticmethod(validate_and_convert_to_enum)  # type: ignore[method-assign]


class Mode(enum.Enum):
    """What one `flexseg` call does."""

    train = "train"
    eval = "eval"
    infer = "infer"
    tiled = "tiled"
    stats = "stats"
    preview = "preview"
    info = "info"
    sync = "sync"
    export = "export"
