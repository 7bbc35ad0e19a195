"""Config fuzz: a few hundred seeded random overrides drawn from the schema go through the CLI's own check
(`flexseg.cli.preflight`, in-process); each either stops with exit 2 and one short line naming its key, or
composes and validates cleanly. Nothing is written, and a few cases run as real `python -m flexseg`."""

from __future__ import annotations

import enum
import random
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, get_origin

import pytest
from conftest import run_cli

from flexseg import cli
from flexseg.config import ranges
from flexseg.config.schemas import Config
from flexseg.config.store import GROUPS, register_configs
from flexseg.config.validation import schema_keys

SEED, CASES = 17, 200
RANGES = ranges.range_keys(Config())
MAX_MESSAGE = 1000
UNICODE = ["ü", "名前", "😀", "\u202eevil", "Ωmega", "ﬁ"]
NONSENSE = ["abc", "[1,2]", "{a: 1}", "maybe", "1.5x", "--", "null null", "[", "}", "%", "${nope}", "a,b"]


def _kind(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "enum"
    if tp in (int, float, bool, str):
        return tp.__name__
    return {list: "list", dict: "dict"}.get(get_origin(tp), "other")


def _leaves() -> dict[str, str]:
    return {k: _kind(t) for k, t in schema_keys(Config).items() if not is_dataclass(t)}


def _wrong_type(kind: str, rng: random.Random) -> str:
    return rng.choice({
        "int": ["abc", "1.5", "[1,2]", "{a: 1}", "true", "1e99", "0x"],
        "float": ["abc", "[0.5]", "{x: 1}", "one"],
        "bool": ["maybe", "[true]", "yes please"],
        "enum": ["nope", "42", "[x]", "{a: b}"],
        "list": ["5", "abc", "{a: 1}"],
        "dict": ["5", "[1,2]", "abc"],
    }.get(kind, ["[a, b]", "{a: b}"]))


def _number(kind: str, rng: random.Random) -> str:
    if kind == "int":
        return rng.choice(["0", "-1", "-7", "-2147483649", "4294967296", "9" * 40])
    return rng.choice(["-1.0", "0", "nan", "inf", "-inf", "1e308", "-1e-9", "1e400", "2.5"])


def draw(rng: random.Random, leaves: dict[str, str]) -> tuple[str, str, bool]:
    """One random override: (override, the key its message must name, whether it must fail)."""
    key = rng.choice(sorted(leaves))
    kind, what = leaves[key], rng.choice(["type", "key", "group", "range", "empty", "huge", "unicode", "junk"])
    if what == "type":
        return f"{key}={_wrong_type(kind, rng)}", key, kind in ("int", "float", "bool", "enum", "list", "dict")
    if what == "key":
        head, _, leaf = key.rpartition(".")
        bad = rng.choice([f"{key}z", f"{key}.sub", f"{head}.{leaf[::-1]}x" if head else f"{leaf}_x", f"nosuch.{leaf}"])
        return f"{bad}={rng.choice(['1', 'abc'])}", bad, True
    if what == "group":
        group = rng.choice([g for g in GROUPS if g != "hparams_search"])
        option = rng.choice(["nope", "FlexUNet", "名前", "../model/flexunet", "x" * 50])
        return f"{group}={option}", group, True
    if what == "range":
        if kind not in ("int", "float"):
            return f"{key}={rng.choice(['-1', 'nan', '0'])}", key, kind in ("list", "dict")
        value = _number(kind, rng)
        interval = RANGES.get(key)
        number = int(value) if kind == "int" else float(value)
        return f"{key}={value}", key, interval is not None and not ranges._inside(number, interval)
    if what == "empty":
        return f"{key}={rng.choice(['', chr(39) * 2])}", key, kind in ("int", "float", "bool", "enum", "list", "dict")
    if what == "huge":
        value = rng.choice(["9" * 400, "x" * 5000, "[" + ",".join(["1"] * 2000) + "]", "1" + "0" * 30])
        return f"{key}={value}", key, False
    if what == "unicode":
        return f"{key}={rng.choice(UNICODE)}", key, kind in ("int", "float", "bool", "enum", "list", "dict")
    return f"{key}={rng.choice(NONSENSE)}", key, False


def _check(override: str, key: str, must_fail: bool, capsys: pytest.CaptureFixture[str]) -> str | None:
    """Run the CLI's check on one override; a description of what went wrong, or None."""
    try:
        cli.preflight([override, "mode=info"])
    except SystemExit as stop:
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        if stop.code != 2:
            return f"exit {stop.code}"
        if len(lines) != 1 or not lines[0].startswith("flexseg: error: ") or len(err) > MAX_MESSAGE:
            return f"not one short line: {err[:300]!r}"
        if key not in err and key.split(".")[-1] not in err:
            return f"message does not name {key}: {err[:300]!r}"
        return None
    except BaseException as err:  # a crash: what the fuzz is for
        return f"crash {type(err).__name__}: {str(err)[:300]}"
    return "accepted a bad value" if must_fail else None


def test_random_overrides_exit_2_naming_the_key_or_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    register_configs()
    rng, leaves = random.Random(SEED), _leaves()
    failures = []
    for _ in range(CASES):
        override, key, must_fail = draw(rng, leaves)
        problem = _check(override, key, must_fail, capsys)
        if problem:
            failures.append(f"{override[:120]!r}: {problem}")
    assert not failures, f"{len(failures)} of {CASES} cases:\n" + "\n".join(failures[:40])
    assert list(tmp_path.iterdir()) == []  # no outputs/, no mlflow.db


REGRESSIONS = [  # cases the fuzz found; each crashed or was accepted before its fix
    ("seed=-1", "seed"),
    ("train.learning_rate=nan", "train.learning_rate"),
    ("augment.vflip.p=3", "augment.vflip.p"),
    ("model.image_height=" + "9" * 400, "model.image_height"),
    ("dataset.synthetic.num_test=" + "x" * 5000, "dataset.synthetic.num_test"),
    ("tiling.overlap=ü", "tiling.overlap"),
    ("train.epochs=1,2", "train.epochs"),
    ("tracking.experiment=${nope}", "tracking.experiment"),
    ("train.learning_rate=" + "9" * 400, "train.learning_rate"),
    ("augment.shrink.range.sub=abc", "augment.shrink.range.sub"),
]


@pytest.mark.parametrize(("override", "key"), REGRESSIONS)
def test_found_cases_exit_2_naming_the_key(override: str, key: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert _check(override, key, True, capsys) is None


def test_real_cli_matches_the_in_process_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rng, leaves = random.Random(SEED + 1), _leaves()
    cases = []
    while len(cases) < 5:
        override, key, must_fail = draw(rng, leaves)
        if must_fail and "\u202e" not in override and len(override) < 200:
            cases.append(override)
    monkeypatch.chdir(tmp_path)
    for override in cases:
        with pytest.raises(SystemExit) as stop:
            cli.preflight([override, "mode=info"])
        in_process = capsys.readouterr().err
        proc = run_cli([override, "mode=info"], cwd=tmp_path, check=False)
        assert (proc.returncode, proc.stderr.strip()) == (stop.value.code, in_process.strip()), override
        assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []
