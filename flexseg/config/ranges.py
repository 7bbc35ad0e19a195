"""The ranges of the config's numbers: a negative batch count, a NaN learning rate or a probability of 3
stop at composition, naming the key, instead of failing deep inside a run (or training on nonsense).

`RANGES` maps a dotted key to an interval in the usual notation (`[0, 1)`: 0 allowed, 1 not; `inf` for
no upper bound); a None value (an optional key left unset) is not checked, and a key the chosen model
lacks is skipped. Every `augment.<op>.p` is a probability in [0, 1]. NaN and infinities are out of
every range. Cross-field rules (sizes divisible by the model's stride, fold indices, ...) stay in
`flexseg.config.validation`. No TensorFlow or MLflow import here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from flexseg.errors import FlexsegError

SEED = "[0, 4294967295]"  # numpy's seeds are 32-bit
RANGES: dict[str, str] = {
    "seed": SEED,
    "model.image_height": "[1, 65536]",
    "model.image_width": "[1, 65536]",
    "model.image_channels": "[1, inf)",
    "model.base_filters": "[1, inf)",
    "model.base_kernels": "[1, inf)",
    "model.dropout_rate": "[0, 1)",
    "model.dilation": "[1, inf)",
    "model.bn_momentum": "[0, 1]",
    "dataset.fold_seed": SEED,
    "dataset.color_tolerance": "[0, inf)",
    "dataset.max_unmatched": "[0, 1]",
    "dataset.threshold": "[0, 255]",
    "dataset.blur": "[0, inf)",
    "dataset.gamma": "(0, inf)",
    "dataset.max_pixels": "[1, inf)",
    "dataset.synthetic.seed": SEED,
    "dataset.synthetic.image_size": "[8, inf)",
    "dataset.synthetic.num_train": "[1, inf)",
    "dataset.synthetic.num_valid": "[1, inf)",
    "dataset.synthetic.num_test": "[1, inf)",
    "dataset.synthetic.num_large": "[0, inf)",
    "dataset.synthetic.large_size": "[8, inf)",
    "preview.count": "[1, inf)",
    "preview.columns": "[1, inf)",
    "preview.panel_size": "[16, inf)",
    "train.steps_per_epoch": "[1, inf)",
    "train.validation_steps": "[1, inf)",
    "train.learning_rate": "(0, inf)",
    "train.clipvalue": "(0, inf)",
    "train.clipnorm": "(0, inf)",
    "train.weight_decay": "[0, inf)",
    "train.momentum": "[0, 1)",
    "train.end_learning_rate": "[0, inf)",
    "train.lr_power": "(0, inf)",
    "train.shuffle_buffer": "[1, inf)",
    "callbacks.patience": "[0, inf)",
    "callbacks.min_delta": "[0, inf)",
    "callbacks.reducer_factor": "(0, 1)",
    "callbacks.reducer_patience": "[0, inf)",
    "callbacks.reducer_cooldown": "[0, inf)",
    "callbacks.min_lr": "[0, inf)",
    "callbacks.num_infer_images": "[0, inf)",
    "augment.deformation.alpha": "[0, inf)",
    "augment.deformation.sigma": "(0, inf)",
    "tiling.tile_size": "[1, 65536]",
    "stats.workers": "[1, inf)",
}


def _inside(value: int | float, interval: str) -> bool:
    """Whether `value` lies in `interval`, e.g. '[0, 1)' (NaN and infinities never do)."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    low, high = (float(part) for part in interval[1:-1].split(","))
    above = value > low or (interval[0] == "[" and value == low)
    below = value < high or (interval[-1] == "]" and value == high)
    return above and below


def _value(cfg: Any, key: str) -> Any:
    """The value at a dotted key, or None where a part is missing or None."""
    for part in key.split("."):
        cfg = getattr(cfg, part, None)
        if cfg is None:
            return None
    return cfg


def range_keys(cfg: Any) -> dict[str, str]:
    """`RANGES` plus the probability `p` of every augmentation op of `cfg.augment`."""
    ops = {f"augment.{f.name}.p": "[0, 1]" for f in dataclasses.fields(cfg.augment)
           if hasattr(getattr(cfg.augment, f.name), "p")}
    return {**RANGES, **ops}


def check_ranges(cfg: Any) -> None:
    """Stop at the first number of `cfg` (a `Config`) outside its range.

    Raises:
        FlexsegError: naming the key, the value and the range.
    """
    for key, interval in range_keys(cfg).items():
        value = _value(cfg, key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not _inside(value, interval):
            raise FlexsegError(f"{key}={value} is out of range: give a number in {interval} "
                               "(a square bracket includes that end, a round one excludes it).")
