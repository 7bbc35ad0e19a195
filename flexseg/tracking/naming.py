"""MLflow run names a person can tell apart: `<experiment>/<mode> <overrides that matter> <MM-DD HH:MM>`.

MLflow's generated names (`traveling-calf-604`) come from the seed, so every job of a sweep got the
same one. The name is built from the call's overrides instead, minus those that do not tell runs
apart (paths, the tracking store, Hydra's own settings, the mode and experiment already in front).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Sequence

NOISE_PREFIXES = ("hydra.", "hydra/", "tracking.", "tracking/")
NOISE_KEYS = {"mode", "experiment", "tracking", "ckpt", "dataset.root", "train.resume", "train.resume_dir"}
SHORT_KEYS = {"learning_rate": "lr"}
MAX_VALUE = 24  # characters of one override's value
MAX_OVERRIDES = 80  # characters of the override part; further overrides become "…"


def _split(override: str) -> tuple[str, str] | None:
    """`+model.num_layers=8` -> ('model.num_layers', '8'); None for a deletion or a bare key."""
    key, sep, value = override.lstrip("+~").partition("=")
    return (key.strip(), value.strip()) if sep and not override.startswith("~") else None


def _is_noise(key: str, value: str, experiment: str) -> bool:
    if key in NOISE_KEYS or key.startswith(NOISE_PREFIXES):
        return True
    if "/" in value or "\\" in value:  # a path or URI: long, and the same for every job of a sweep
        return True
    return key == "dataset" and value == experiment  # `dataset=lizard` under experiment `lizard`


def describe_overrides(overrides: Sequence[str], experiment: str = "") -> str:
    """The overrides that tell runs apart, short: `lr=1e-4 num_layers=8`.

    Keys lose their group (`model.num_layers` -> `num_layers`) unless two kept overrides would then
    share a name; `learning_rate` reads `lr`; a repeated key shows its last value; long values are
    cut; beyond `MAX_OVERRIDES` characters the rest is "…".
    """
    last = dict(kv for kv in map(_split, overrides) if kv is not None)  # a repeated key: the last value wins
    kept = [(key, value) for key, value in last.items() if not _is_noise(key, value, experiment)]
    short = [SHORT_KEYS.get(key.rsplit(".", 1)[-1], key.rsplit(".", 1)[-1]) for key, _ in kept]
    clashes = {name for name, n in Counter(short).items() if n > 1}
    parts: list[str] = []
    for (key, value), name in zip(kept, short):
        value = value if len(value) <= MAX_VALUE else value[: MAX_VALUE - 1] + "…"
        part = f"{key if name in clashes else name}={value}"
        if parts and len(" ".join([*parts, part])) > MAX_OVERRIDES:
            parts.append("…")
            break
        parts.append(part)
    return " ".join(parts)


def run_name(experiment: str, mode: str, overrides: Sequence[str], when: datetime | None = None) -> str:
    """`lizard/train lr=1e-4 num_layers=8 12-03 14:05` for a run of `mode` started now (or `when`).

    Args:
        experiment: `tracking.experiment`.
        mode: `train`, `eval`, `infer`, `tiled`, `stats`, `preview`.
        overrides: The call's command-line overrides (`RunContext.overrides`).
        when: The start time; None is now.
    """
    stamp = (when or datetime.now()).strftime("%m-%d %H:%M")
    return " ".join(p for p in (f"{experiment}/{mode}", describe_overrides(overrides, experiment), stamp) if p)


def ui_route(experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI's route (after `http://HOST:PORT/`) to the runs table, or to one run.

    MLflow 3.17's UI starts in its GenAI view (a switch remembered per browser); the
    `workflowType=machine_learning` query opens the model-training view (runs, metrics, images).
    """
    run = f"/runs/{run_id}" if run_id else ""
    return f"#/experiments/{experiment_id}{run}?workflowType=machine_learning"
