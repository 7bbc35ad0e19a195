"""Equal-time accuracy race: flexseg's default recipe against the reference recipe, test foreground dice.

Each recipe trains for the same wall-clock budget (`train.time_limit`, epochs high enough never to end
first) through the `flexseg` command, as a user runs it, each in its own output dir and MLflow store
in one temporary working dir per dataset; then `flexseg mode=eval` scores its best checkpoint on the
test split. The figure is the test mean foreground dice at each image's own size
(`mean_foreground_dice_original_size` of evaluation.csv): the default model and the reference one
may run at different resolutions, and that score is what `mode=infer` delivers at either.

Recipes:
  default    flexseg's conf/ defaults, nothing overridden but the dataset.
  reference  reference parity: `experiment=lung_tumor` (the reference's model, training, callbacks and
             augmentation). On the 128x128 synthetic images its model runs at their size, 128x128, as
             the reference experiments set the model size to their data's (512x512).
Datasets:
  lung_tumor  ../shared/data/lung_tumor_mini (16/4/4 512x512 CT slices; skipped with a note if absent)
  synthetic   the embedded synthetic dataset (generated into the working dir)

    python benchmarks/race.py [--budget 300] [--datasets lung_tumor,synthetic] [--json race.json]
        [--recipes default,reference] [--default-overrides "model.normalization=group ..."]
        [--wrap "flock /tmp/cpu.lock"] [--keep DIR]

Exit 0 whoever wins (the table says who); non-zero when a run fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (benchmarks/ is a folder of scripts; benchlib imports no TensorFlow)

REPO = benchlib.REPO
LUNG_ROOT = REPO.parent / "shared" / "data" / "lung_tumor_mini"
EPOCHS = 100000  # never reached: the time limit ends every training
FIGURE = "mean_foreground_dice_original_size"  # the race figure in evaluation.csv
MODEL_RES = "mean_foreground_dice"  # the same at model resolution (shown beside it)
RECIPES = ("default", "reference")
DATASETS = ("lung_tumor", "synthetic")


class RaceError(RuntimeError):
    """A flexseg run of the race failed."""


@dataclass
class Result:
    """One recipe trained and evaluated on one dataset."""

    dataset: str
    recipe: str
    dice: float  # test mean foreground dice at original size (the figure)
    dice_model: float  # the same at model resolution
    epochs: int
    train_wall_s: float  # the training command, start to exit (startup, budget, last validation)
    eval_wall_s: float


def dataset_overrides(dataset: str, lung_root: Path) -> list[str]:
    """The overrides that choose `dataset` (the same for every recipe)."""
    if dataset == "lung_tumor":
        return ["dataset=lung_tumor", f"dataset.root={lung_root}"]
    if dataset == "synthetic":
        return ["dataset=default"]
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def recipe_overrides(recipe: str, dataset: str, default_overrides: list[str]) -> list[str]:
    """The overrides that make `recipe` (after the dataset's: an experiment sets its own dataset)."""
    if recipe == "default":
        return list(default_overrides)
    if recipe == "reference":
        size = ["model.image_height=128", "model.image_width=128"] if dataset == "synthetic" else []
        return ["experiment=lung_tumor", *size]
    raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")


def read_evaluation(path: Path) -> dict[str, float]:
    """The `key,value` lines of an evaluation.csv (lines whose value is not a number are left out)."""
    values: dict[str, float] = {}
    with path.open(newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2:
                try:
                    values[row[0]] = float(row[1])
                except ValueError:
                    continue
    return values


def read_epochs(state_file: Path) -> int:
    """Epochs a training completed, from its checkpoints/state.json (0 when there is none)."""
    try:
        return int(json.loads(state_file.read_text()).get("epoch", 0))
    except (OSError, ValueError):
        return 0


def verdict(default: float, reference: float) -> str:
    """Who won one dataset's race: `default`, `reference` or `tie` (a NaN score loses)."""
    d = default if math.isfinite(default) else -1.0
    r = reference if math.isfinite(reference) else -1.0
    return "default" if d > r else "reference" if r > d else "tie"


def figure_rows(results: list[Result]) -> list[dict[str, object]]:
    """One figure-protocol row per dataset raced by both recipes: value = default, baseline = reference."""
    by = {(r.dataset, r.recipe): r for r in results}
    rows: list[dict[str, object]] = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        if (dataset, "default") not in by or (dataset, "reference") not in by:
            continue
        d, r = by[dataset, "default"].dice, by[dataset, "reference"].dice
        ratio = d / r if math.isfinite(d) and math.isfinite(r) and r > 0 else None
        rows.append({"figure": f"race {dataset}: test foreground dice, default (baseline: reference)",
                     "value": d, "unit": "dice", "baseline": r, "ratio": ratio,
                     "target": "> reference", "ok": verdict(d, r) == "default"})
    return rows


def table(results: list[Result], budget: float) -> str:
    """A markdown table of every result, then one line per dataset naming the winner."""
    lines = [f"Equal-time race, train.time_limit={budget:g} s per recipe; test mean foreground dice at original "
             "size (model resolution in brackets).", "",
             "| dataset | recipe | test dice | (model res) | epochs | train wall s | eval wall s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.dataset} | {r.recipe} | {r.dice:.4f} | ({r.dice_model:.4f}) | {r.epochs} | "
              f"{r.train_wall_s:.0f} | {r.eval_wall_s:.0f} |" for r in results]
    by = {(r.dataset, r.recipe): r for r in results}
    lines.append("")
    for dataset in dict.fromkeys(r.dataset for r in results):
        if (dataset, "default") in by and (dataset, "reference") in by:
            d, r = by[dataset, "default"].dice, by[dataset, "reference"].dice
            who = verdict(d, r)
            lines.append(f"- {dataset}: {'a tie' if who == 'tie' else who + ' wins'} ({d:.4f} vs {r:.4f})")
    return "\n".join(lines)


def flexseg(args: list[str], cwd: Path, wrap: list[str], timeout: float) -> float:
    """Run `python -m flexseg ARGS` in `cwd` (after the `wrap` command words); its wall seconds.

    Raises:
        RaceError: It exited non-zero or ran past `timeout`.
    """
    command = [*wrap, sys.executable, "-m", "flexseg", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise RaceError(f"{shlex.join(command)} ran past {timeout:.0f} s") from err
    if proc.returncode != 0:
        raise RaceError(f"{shlex.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def race_one(dataset: str, recipe: str, budget: float, work: Path, lung_root: Path, default_overrides: list[str],
             wrap: list[str]) -> Result:
    """Train `recipe` on `dataset` for `budget` seconds in `work`, evaluate its best checkpoint."""
    out = work / recipe
    common = [*dataset_overrides(dataset, lung_root), *recipe_overrides(recipe, dataset, default_overrides),
              f"tracking.uri=sqlite:///{out / 'mlflow.db'}"]
    timeout = 3 * budget + 900
    train_s = flexseg([*common, "mode=train", f"train.epochs={EPOCHS}", f"train.time_limit={budget:g}",
                       f"hydra.run.dir={out / 'train'}"], work, wrap, timeout)
    ckpt = out / "train" / "checkpoints" / "best.keras"
    eval_s = flexseg([*common, "mode=eval", f"ckpt={ckpt}", f"hydra.run.dir={out / 'eval'}"], work, wrap, timeout)
    scores = read_evaluation(out / "eval" / "evaluation.csv")
    return Result(dataset, recipe, scores.get(FIGURE, math.nan), scores.get(MODEL_RES, math.nan),
                  read_epochs(out / "train" / "checkpoints" / "state.json"), train_s, eval_s)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per recipe (train.time_limit)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: lung_tumor,synthetic")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated: default,reference")
    parser.add_argument("--lung-root", type=Path, default=LUNG_ROOT, help="the lung_tumor_mini folder")
    parser.add_argument("--default-overrides", default="", help="race a variant: overrides added to the default")
    parser.add_argument("--wrap", default="", help="command words before each flexseg run, e.g. 'flock /tmp/x.lock'")
    parser.add_argument("--json", type=Path, default=None, help="write the figure JSON here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs under this folder (default: a temp one)")
    args = parser.parse_args(argv)

    datasets = [d for d in args.datasets.split(",") if d]
    recipes = [r for r in args.recipes.split(",") if r]
    for name in datasets:
        dataset_overrides(name, args.lung_root)  # an unknown name stops here, before any training
    for name in recipes:
        recipe_overrides(name, "synthetic", [])
    notes = []
    if "lung_tumor" in datasets and not args.lung_root.is_dir():
        datasets.remove("lung_tumor")
        notes.append(f"lung_tumor skipped: {args.lung_root} is missing (../shared/data is not in a fresh clone)")
        print(f"note: {notes[-1]}", flush=True)

    results: list[Result] = []
    try:
        with benchlib.work_folder(args.keep, "flexseg-race-") as base:
            for dataset in datasets:
                work = base / dataset
                work.mkdir(parents=True, exist_ok=True)
                for recipe in recipes:
                    print(f"{dataset} / {recipe}: training {args.budget:g} s ...", flush=True)
                    result = race_one(dataset, recipe, args.budget, work, args.lung_root,
                                      shlex.split(args.default_overrides), shlex.split(args.wrap))
                    results.append(result)
                    print(f"  test dice {result.dice:.4f} (model res {result.dice_model:.4f}), {result.epochs} "
                          f"epochs, train {result.train_wall_s:.0f} s + eval {result.eval_wall_s:.0f} s wall", flush=True)
    except RaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    text = "\n".join([table(results, args.budget), *(f"- {n}" for n in notes)])
    print("\n" + text)
    if args.json:
        benchlib.write_json(args.json, f"Equal-time race ({args.budget:g} s of training per recipe)", figure_rows(results),
                   text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
