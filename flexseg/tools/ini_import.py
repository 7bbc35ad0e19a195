"""`flexseg-import-ini`: a reference `train_eval_infer.config` (INI) -> an experiment YAML for flexseg.

Values are parsed with `ast.literal_eval` (numbers, strings, tuples, lists, dicts, booleans) —
never evaluated as code. Keys with no flexseg equivalent are reported, split into those that need
none (output folders, backups, ...) and those this converter does not know; so is a value flexseg
cannot take (text where a number belongs), which is left out.

    flexseg-import-ini path/to/train_eval_infer.config -o my_conf/experiment/my_exp.yaml [--names bg,a,b]
        [--data-root DIR]   # then: flexseg --config-dir my_conf experiment=my_exp
"""

from __future__ import annotations

import argparse
import ast
import configparser
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flexseg.config.store import EXPERIMENTS_DIR, group_options
from flexseg.config.validation import schema_keys
from flexseg.tools.ini_data import HANDLED as DATA_HANDLED
from flexseg.tools.ini_data import ConversionError, convert_data

MARK = "by flexseg-import-ini"  # in every file it writes: re-importing may overwrite those, and only those
# Reference keys with no flexseg equivalent needed: folders (Hydra's run dir holds the outputs),
# backups, debug switches, dataset class names of the reference code.
NOT_NEEDED = {
    "model": {"show_summary", "generator", "optimizer_name"},
    "dataset": {"class_name", "datasetclass", "resize_interpolation"},
    "train": {"model_dir", "eval_dir", "epoch_change_infer_dir", "epoch_change_tiledinfer_dir", "create_backup",
              "save_weights_only", "metrics", "valid_data_ratio", "seed"},
    "infer": {"output_dir", "merged_dir", "sharpening"},
    "tiledinfer": {"output_dir", "merged_dir", "bitwise_blending", "binarize", "sharpening", "split_size", "save_tiled_image"},
    "generator": {"debug"},
    "mask": {"mask_datatype", "mask_file_format", "grayscaling", "num_classes"},
    "segmentation": {"blended_alpha"},
}
# The reference's typo'd keys it silently ignored: read them for what they meant.
ALIASES = {"alpah": "alpha", "sigmoids": "sigma", "reduer_patience": "reducer_patience"}
# Probability of each reference augmentor op as a random op (conf/augment/reference.yaml).
AUG_P = {"hflip": 0.15, "vflip": 0.15, "rotation": 0.2, "shrink": 0.05, "shear": 0.2, "deformation": 0.05,
         "distortion": 0.05, "barrdistortion": 0.25, "pincdistortion": 0.25, "sharpening": 0.1, "brightening": 0.1}
# The reference filters 3-channel elastic noise in 3-D, which shrinks the field: alpha 1300 there
# moves pixels as far as alpha 110 in our 2-D elastic op (see flexseg.config.augment.ElasticConfig).
ELASTIC_ALPHA_SCALE = 110.0 / 1300.0


def parse_value(text: str) -> Any:
    """An INI value as a Python literal (safe: `ast.literal_eval`), or the plain string."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("\"'")


@dataclass
class Conversion:
    """The experiment built from an INI file, and what could not be carried over."""

    values: dict[str, Any] = field(default_factory=dict)
    defaults: list[dict[str, str]] = field(default_factory=list)
    not_needed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # values of known keys that flexseg cannot take
    notes: list[str] = field(default_factory=list)  # what the user must add (paths that do not exist here)

    def set(self, key: str, value: Any) -> None:
        node = self.values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) else value


SIMPLE = {  # (section, key) -> flexseg key
    ("model", "image_width"): "model.image_width", ("model", "image_height"): "model.image_height",
    ("model", "image_channels"): "model.image_channels", ("model", "base_filters"): "model.base_filters",
    ("model", "num_layers"): "model.num_layers", ("model", "dropout_rate"): "model.dropout_rate",
    ("model", "input_normalize"): "model.input_normalize", ("model", "learning_rate"): "train.learning_rate",
    ("model", "clipvalue"): "train.clipvalue", ("model", "loss"): "train.loss",
    ("train", "epochs"): "train.epochs", ("train", "batch_size"): "train.batch_size",
    ("train", "steps_per_epoch"): "train.steps_per_epoch", ("train", "validation_steps"): "train.validation_steps",
    ("train", "patience"): "callbacks.patience", ("train", "learning_rate_reducer"): "callbacks.reduce_lr",
    ("train", "reducer_factor"): "callbacks.reducer_factor", ("train", "reducer_patience"): "callbacks.reducer_patience",
    ("train", "epoch_change_infer"): "callbacks.epoch_change_infer",
    ("train", "num_infer_images"): "callbacks.num_infer_images",
    ("train", "epoch_change_tiledinfer"): "callbacks.epoch_change_tiled",
    ("tiledinfer", "overlapping"): "tiling.overlap", ("image", "color_order"): "dataset.color_order",
    ("image", "gamma"): "dataset.gamma", ("mask", "threshold"): "dataset.threshold",
    ("mask", "binarize"): "dataset.binarize",
    ("sharpening", "k"): "augment.sharpening.k", ("brightening", "alpha"): "augment.brightening.alpha",
    ("brightening", "beta"): "augment.brightening.beta",
    ("distortion", "gaussian_filter_rsigma"): "augment.distortion.gaussian_filter_rsigma",
    ("distortion", "gaussian_filter_sigma"): "augment.distortion.gaussian_filter_sigma",
    ("distortion", "distortions"): "augment.distortion.distortions",
}


def _convert_model(ini: dict[str, dict[str, Any]], out: Conversion) -> None:
    m = ini.get("model", {})
    out.set("model.name", "flexunet")
    if "base_kernels" in m:
        out.set("model.base_kernels", int(_first(m["base_kernels"])))
    if "dilation" in m:
        out.set("model.dilation", int(_first(m["dilation"])))
    # Always set: without the key the reference normalises nothing (flexseg's default is instance).
    out.set("model.normalization", "batch" if m.get("normalization") in (True, "batch") else "none")
    if m.get("num_classes") == 1:
        out.set("model.num_classes", 1)
    if "metrics" in m:
        out.set("train.metrics", [*[x for x in m["metrics"] if not x.startswith("val_")], "dice", "iou"])


def _convert_augment(ini: dict[str, dict[str, Any]], out: Conversion) -> None:
    if not ini.get("generator", {}).get("augmentation"):
        return
    out.defaults.append({"override /augment": "reference"})
    aug = ini.get("augmentor", {})
    for op in ("hflip", "vflip", "rotation", "deformation", "distortion", "barrdistortion", "pincdistortion",
               "sharpening", "brightening"):
        if op in aug:
            out.set(f"augment.{op}.p", AUG_P[op] if aug[op] else 0.0)
    for key, op in (("angles", "rotation"), ("shrinks", "shrink"), ("shears", "shear")):
        if key in aug:
            out.set(f"augment.{op}.{'angles' if key == 'angles' else 'factors'}", [float(v) for v in aug[key]])
            out.set(f"augment.{op}.p", AUG_P[op] if aug[key] else 0.0)
    deform = ini.get("deformation", {})
    if "alpha" in deform:
        out.set("augment.deformation.alpha", round(float(deform["alpha"]) * ELASTIC_ALPHA_SCALE, 1))
    if "sigma" in deform:
        out.set("augment.deformation.sigma", float(_first(deform["sigma"])))
    for op in ("barrdistortion", "pincdistortion"):
        for key in ("radius", "amount"):
            if key in ini.get(op, {}):
                value = float(ini[op][key])
                out.set(f"augment.{op}.{key}", -abs(value) if op == "pincdistortion" and key == "amount" else value)
        if "centers" in ini.get(op, {}):
            out.set(f"augment.{op}.centers", [list(map(float, c)) for c in ini[op]["centers"]])


HANDLED = {("model", k) for k in ("model", "base_kernels", "dilation", "normalization", "num_classes", "metrics")}
HANDLED |= DATA_HANDLED | {("augmentor", k) for k in AUG_P}
HANDLED |= {("augmentor", k) for k in ("angles", "shrinks", "shears", "rotation")}
HANDLED |= {("deformation", "alpha"), ("deformation", "sigma"), ("generator", "augmentation")}
HANDLED |= {(op, k) for op in ("barrdistortion", "pincdistortion") for k in ("radius", "amount", "centers")}


def convert_ini(text: str, base: Path = Path("."), names: list[str] | None = None, name: str = "imported",
                data_root: Path | None = None) -> Conversion:
    """Convert the text of a reference INI file.

    Args:
        text: The INI file's text.
        base: The INI's folder, against which the reference resolves its relative paths.
        names: Class names in index order; None: background, class_1, ...
        name: Experiment name (`tracking.experiment`, `dataset.name`).
        data_root: The user's copy of the dataset (holding train/, valid/, test/); None: the INI's
            own paths, where they exist on this machine.

    Raises:
        configparser.Error: when `text` is not INI.
        ConversionError: when `names` does not fit the INI's classes.
    """
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.optionxform = str
    parser.read_string(text)
    ini = {s: {ALIASES.get(k, k): parse_value(v) for k, v in parser[s].items()} for s in parser.sections()}
    # The user's own data: no synthetic block inherited from the default dataset (conf/dataset/custom.yaml).
    out = Conversion(defaults=[{"override /dataset": "custom"}])
    _convert_model(ini, out)
    convert_data(ini, out, base, names, data_root)
    _convert_augment(ini, out)
    types = schema_keys()
    for (section, key), target in SIMPLE.items():
        if key in ini.get(section, {}):
            value = ini[section][key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if types[target] in (int, float) and value is not None and not number:
                out.invalid.append(f"[{section}] {key} = {value!r} (not a number)")
                continue
            out.set(target, value)
    out.set("tracking.experiment", name)
    out.set("dataset.name", name)
    for section, values in ini.items():
        for key in values:
            if (section, key) in SIMPLE or (section, key) in HANDLED:
                continue
            off = values[key] is None or values[key] is False  # a switched-off option needs no equivalent
            bucket = out.not_needed if off or key in NOT_NEEDED.get(section, set()) else out.unknown
            bucket.append(f"[{section}] {key}")
    return out


def to_yaml(conv: Conversion, source: str) -> str:
    body = dict(conv.values)
    if conv.defaults:
        body = {"defaults": conv.defaults, **body}
    lines = ["# @package _global_", f"# Imported from {source} {MARK}."]
    if conv.unknown:
        lines.append("# Keys not carried over (unknown to the converter): " + ", ".join(conv.unknown))
    if conv.invalid:
        lines.append("# Values not carried over: " + ", ".join(conv.invalid))
    lines += [f"# Note: {note}" for note in conv.notes]
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)


def run_command(output: Path) -> str | None:
    """The `flexseg` command that runs the experiment file `output`, or None where Hydra cannot find it.

    Hydra finds an experiment as an option of the `experiment` group: a file in flexseg's own
    experiments/ folder, or in `DIR/experiment/` of a config dir given with `--config-dir DIR`.
    """
    if output.parent.resolve() == EXPERIMENTS_DIR.resolve():
        return f"flexseg experiment={output.stem}"
    if output.parent.name == "experiment":
        return f"flexseg --config-dir {shlex.quote(str(output.parent.parent))} experiment={output.stem}"
    return None


def _check_output(output: Path) -> str | None:
    """Why `output` cannot hold a runnable experiment, or None when it can."""
    if output.suffix != ".yaml":
        return f"-o {output}: Hydra reads experiments from .yaml files; use -o DIR/experiment/NAME.yaml."
    if run_command(output) is None:
        return (f"-o {output}: flexseg finds experiments in DIR/experiment/NAME.yaml (run with flexseg --config-dir "
                f"DIR experiment=NAME) or in its own experiments/ folder; use e.g. -o my_conf/experiment/{output.name}.")
    if output.stem in group_options("experiment") and output.resolve() != (EXPERIMENTS_DIR / output.name).resolve():
        return f"-o {output}: flexseg's experiments/ has an experiment '{output.stem}' too; choose another file name."
    if output.is_file() and MARK not in output.read_text()[:500]:
        return f"-o {output}: the file exists and was not written by flexseg-import-ini; choose another file name."
    return None


def main(argv: list[str] | None = None) -> int:
    """Console entry point of `flexseg-import-ini`."""
    parser = argparse.ArgumentParser(prog="flexseg-import-ini", description=__doc__.split("\n\n")[0])
    parser.add_argument("ini", type=Path, help="a reference train_eval_infer.config")
    parser.add_argument("-o", "--output", type=Path,
                        help="experiment YAML to write, DIR/experiment/NAME.yaml (then: flexseg --config-dir DIR "
                             "experiment=NAME); default: print it")
    parser.add_argument("--names", help="class names in index order, comma-separated (default: background, class_1, "
                                        "...); a binary INI (num_classes = 1) also takes the foreground name alone")
    parser.add_argument("--name", help="experiment name (default: the output file's stem, else the INI folder's name)")
    parser.add_argument("--data-root", type=Path,
                        help="your copy of the dataset, the folder holding train/, valid/, test/ (default: the "
                             "INI's own relative paths, where they exist)")
    args = parser.parse_args(argv)
    problem = (f"'{args.ini}' does not exist." if not args.ini.is_file() else
               f"--data-root {args.data_root}: no such folder." if args.data_root and not args.data_root.is_dir() else
               _check_output(args.output) if args.output else None)
    if problem:
        return _error(problem)
    name = args.name or (args.output.stem if args.output else args.ini.resolve().parent.name)
    try:
        conv = convert_ini(args.ini.read_text(), args.ini.resolve().parent,
                           args.names.split(",") if args.names else None, name, args.data_root)
    except configparser.Error as err:
        return _error(f"'{args.ini}' is not a valid INI file: {err}")
    except ConversionError as err:
        return _error(str(err))
    text = to_yaml(conv, str(args.ini))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, args.output)
        print(f"wrote {args.output}; run it with:\n  {run_command(args.output)}")
    else:
        print(text, end="")
    report = [("not needed in flexseg (outputs live in the run dir; options switched off)", conv.not_needed),
              ("unknown keys, not carried over", conv.unknown), ("values not carried over", conv.invalid)]
    for title, items in report:
        if items:
            print(f"{title}: {', '.join(items)}", file=sys.stderr)
    for note in conv.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _error(message: str) -> int:
    print(f"flexseg-import-ini: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
