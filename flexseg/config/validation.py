"""Checks of a composed config: unknown override keys (with the closest valid key) and cross-field rules.

Imports neither TensorFlow nor MLflow, like `flexseg.config.schemas`.
"""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass
from typing import Any, Sequence, get_args, get_origin, get_type_hints

from flexseg.config.models import MODEL_SCHEMAS, check_model_config, compute_size_multiple
from flexseg.config.ranges import check_ranges
from flexseg.config.schemas import Config
from flexseg.config.store import GROUPS
from flexseg.errors import FlexsegError

# Names of `flexseg.training.losses.LOSSES` (not imported: it pulls in TensorFlow) that need a
# softmax over K > 1 outputs: on one sigmoid output they are constant (categorical cross-entropy
# renormalises the single channel to 1) or undefined (class index 1 of 1). No loss needs K = 1.
MULTICLASS_ONLY_LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy")
BINARY_LOSSES = ("bce_dice_loss", "binary_crossentropy", "dice_ce_loss", "focal_loss", "tversky_loss")

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


def model_schema_keys(model: str) -> dict[str, Any]:
    """`schema_keys()` with the `model.` keys of model `model` (every zoo model's for an option flexseg lacks)."""
    known = {k: v for k, v in schema_keys().items() if not k.startswith("model.")}
    for schema in [MODEL_SCHEMAS[model]] if model in MODEL_SCHEMAS else list(MODEL_SCHEMAS.values()):
        known.update(schema_keys(schema, "model."))
    return known


def check_override_key(key: str, models: Sequence[str] = ("flexunet",)) -> None:
    """Raise FlexsegError naming `key` and the closest valid key when the schema lacks it.

    Group selections (`dataset=lizard`), list items (`dataset.classes.0.name`) and Hydra's own
    keys are accepted; anything else must be a field of the schema. A `model.` key must be a key
    of each model of `models` (the command's `model=` options; each zoo model has its own keys).
    """
    if key.startswith("hydra") or key in GROUPS:
        return
    for model in models if key.startswith("model.") else models[:1]:
        _check_key(key, model_schema_keys(model), model)


def _check_key(key: str, known: dict[str, Any], model: str) -> None:
    """`check_override_key` against the flattened schema `known` of a config whose model is `model`."""
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
    owners = [n for n, s in MODEL_SCHEMAS.items() if parent == "model" and parts[i - 1] in {f.name for f in fields(s)}]
    if not candidates and not owners:  # a leaf put at the wrong level, e.g. `epochs=3` for `train.epochs=3`
        leaf = parts[-1]
        candidates = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f" Did you mean '{candidates[0]}'?" if candidates else ""
    if owners:
        hint = f" It is a key of model={', '.join(owners)}: choose the model too, e.g. model={owners[0]} {key}=..."
    valid = ", ".join(s.rsplit(".", 1)[-1] for s in siblings)
    where = f"'{parent}' (model={model})" if parent == "model" else f"'{parent}'" if parent else "the top level"
    raise FlexsegError(
        f"Unknown config key '{key}': '{parts[i - 1]}' is not a key of {where}.{hint} "
        f"Valid keys there: {valid}."
    )


# --------------------------------------------------------------------------- cross-field checks


def validate_config(cfg: Config) -> Config:
    """Check values that span groups; resolve `model.num_classes`.

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
        for key, rgb in (("color", c.color), ("display_color", c.display_color or [0, 0, 0])):
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise FlexsegError(
                    f"dataset.classes[{i}] ('{c.name}') has {key} {list(rgb)}; give [R, G, B] with values 0..255."
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
    if m.num_classes == 1 and cfg.train.loss in MULTICLASS_ONLY_LOSSES:
        raise FlexsegError(
            f"train.loss={cfg.train.loss} needs a softmax over 2 or more outputs, but model.num_classes=1 builds "
            f"one sigmoid output, on which it is constant and nothing is learnt. Use a loss for one output "
            f"({', '.join(BINARY_LOSSES)}; unset: {BINARY_LOSSES[0]}), or model.num_classes={n} for a softmax model."
        )
    if m.num_layers < 2:
        raise FlexsegError(f"model.num_layers={m.num_layers}; a UNet needs at least 2 levels.")
    check_model_config(m)
    step, why = compute_size_multiple(m)  # 2**(num_layers-1) for the UNets; each zoo model says its own
    for key, size in (("image_height", m.image_height), ("image_width", m.image_width)):
        if size <= 0 or size % step:
            raise FlexsegError(
                f"model.{key}={size} is not divisible by {why}={step} (model={m.name}, num_layers={m.num_layers}); "
                f"use a multiple of {step}, e.g. {max(step, (size + step // 2) // step * step)}, or a smaller model."
            )
    t = cfg.tiling
    if t.tile_size <= 0 or t.tile_size % step:
        raise FlexsegError(
            f"tiling.tile_size={t.tile_size} is not divisible by {why}={step} (model={m.name}); use a positive "
            f"multiple of {step} (it may differ from the training size)."
        )
    if not (0 <= t.overlap < t.tile_size and (t.overlap < 1 or t.overlap == int(t.overlap))):
        raise FlexsegError(
            f"tiling.overlap={t.overlap:g} must be >= 0 and smaller than tiling.tile_size={t.tile_size}: whole "
            "pixels, or a fraction of the tile below 1 (0.25 = a quarter of the tile)."
        )
    for key, value in (
        ("train.batch_size", cfg.train.batch_size),
        ("infer.batch_size", cfg.infer.batch_size),
        ("tiling.batch_size", t.batch_size),
        ("train.epochs", cfg.train.epochs),
    ):
        if value < 1:
            raise FlexsegError(f"{key}={value}; it must be at least 1.")
    if cfg.train.time_limit is not None and not cfg.train.time_limit > 0:
        raise FlexsegError(f"train.time_limit={cfg.train.time_limit}; give the seconds training may take (> 0), "
                           "or null for no limit.")
    parse_every(cfg.callbacks.last_every)
    _check_folds(cfg.dataset.folds, cfg.dataset.fold)
    check_ranges(cfg)
    return cfg


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_every(text: str, key: str = "callbacks.last_every") -> tuple[int, float]:
    """`callbacks.last_every` -> (every N-th epoch, or 0; every T seconds, or 0.0).

    "5" is every 5th epoch; "300s", "10m", "1.5h" are times.

    Raises:
        FlexsegError: Not a positive whole number of epochs nor a positive time.
    """
    value = str(text).strip().lower()
    if value.isdigit() and int(value) >= 1:
        return int(value), 0.0
    for unit in sorted(_UNITS, key=len, reverse=True):
        number = value[: -len(unit)].strip()
        if value.endswith(unit) and number.replace(".", "", 1).isdigit() and float(number) > 0:
            return 0, float(number) * _UNITS[unit]
    raise FlexsegError(f"{key}='{text}' is neither a number of epochs (1, 5, ...) nor a time (300s, 10m, 1h); "
                       "e.g. callbacks.last_every=5 or callbacks.last_every=10m.")


def _check_folds(folds: int | None, fold: int) -> None:
    """`dataset.folds` / `dataset.fold`: at least 2 folds, and a fold index among them."""
    if folds is None:
        if fold != 0:
            raise FlexsegError(
                f"dataset.fold={fold} is set but dataset.folds is not; set dataset.folds=K (K >= 2) for k-fold "
                "cross-validation, or leave dataset.fold unset to train on the train/valid splits as they are."
            )
        return
    if folds < 2:
        raise FlexsegError(f"dataset.folds={folds}; k-fold cross-validation needs at least 2 folds (or null to "
                           "use the train/valid splits as they are).")
    if not 0 <= fold < folds:
        raise FlexsegError(f"dataset.fold={fold} is not a fold of dataset.folds={folds}; use 0..{folds - 1} "
                           f"(a sweep over all folds: dataset.fold='range({folds})').")
