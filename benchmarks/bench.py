"""`make bench`: every benchmark figure, each in its own process, into one table and BENCHMARKS.md.

Runs, in order, the figure scripts of `SCRIPTS` (each writes the figure JSON of benchlib's protocol),
passing `--limits` (the first figure's JSON) to the scripts that take it. A script that is missing,
fails or runs past its timeout is reported as such (with the tail of its stderr) and the rest still
run. Prints each script's wall time, then one combined table, and writes BENCHMARKS.md at the repo
root (atomically): date, machine, every figure's rows and text, how to reproduce.

    python benchmarks/bench.py [--only limits,train] [--out BENCHMARKS.md] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (after the path setup)

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Script:
    """A figure script: key, file in benchmarks/, extra arguments, timeout in seconds."""

    key: str
    file: str
    args: tuple[str, ...] = ()
    timeout: float = 600.0


SCRIPTS: tuple[Script, ...] = (
    Script("limits", "bench_limits.py", timeout=180),
    Script("train", "bench_train.py", timeout=420),
    Script("profile", "bench_profile.py", ("--steps", "1"), timeout=420),
    Script("overhead", "bench_overhead.py", ("--epochs", "5", "--minimal-epochs", "3"), timeout=600),
    Script("predict", "bench_predict.py", timeout=420),
    # A short race on the synthetic data; `make race BUDGET=300` races both datasets (README).
    Script("race", "race.py", ("--datasets", "synthetic", "--budget", "30"), timeout=600),
)


@dataclass
class Result:
    """What one script gave: status ok | failed | timeout | missing, wall seconds, its figure, stderr tail."""

    script: Script
    status: str
    seconds: float = 0.0
    figure: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


def takes_limits(path: Path) -> bool:
    """The script accepts `--limits` (read from its source: no process started)."""
    return '"--limits"' in path.read_text(errors="replace")


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_script(script: Script, folder: Path, limits: Optional[Path], directory: Path = HERE) -> Result:
    """Run one figure script in its own process (and process group, killed whole on timeout)."""
    path = directory / script.file
    if not path.exists():
        return Result(script, "missing", detail=f"{path.name} does not exist (yet): skipped")
    out = folder / f"{script.key}.json"
    out.unlink(missing_ok=True)  # a figure from an earlier run (--keep) must not pass for this one
    cmd = [sys.executable, str(path), *script.args, "--json", str(out)]
    if limits is not None and limits.exists() and takes_limits(path):
        cmd += ["--limits", str(limits)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stderr=err, start_new_session=True)
        try:
            rc = proc.wait(timeout=script.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        err.seek(0)
        stderr = err.read()
    seconds = time.perf_counter() - start
    if rc is None:
        return Result(script, "timeout", seconds, detail=f"killed after {script.timeout:.0f} s\n{tail(stderr)}")
    if rc != 0 or not out.exists():
        why = f"exit code {rc}" if rc else "no figure JSON written"
        return Result(script, "failed", seconds, detail=f"{why}\n{tail(stderr)}")
    return Result(script, "ok", seconds, figure=json.loads(out.read_text()))


def machine_line() -> str:
    """CPU (model, cores, speed flags), Python and TensorFlow versions, read without importing TensorFlow."""
    from flexseg.training.devices import cpu_info

    cpu = cpu_info()
    versions = []
    for dist in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    flags = " ".join(sorted(cpu.flags)) or "no AVX2, AVX-512 or AMX"
    return (f"{cpu.model}, {cpu.cores} cores (flags: {flags}); {platform.system()} {platform.machine()}; "
            f"Python {platform.python_version()}; " + ", ".join(versions))


def summary_rows(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Every figure's rows, each prefixed with its script key; one status row per script that gave none."""
    rows = []
    for r in results:
        if r.status != "ok":
            rows.append({"figure": f"{r.script.key}: {r.status.upper()}", "value": None, "unit": "",
                         "baseline": None, "ratio": None, "target": None, "ok": False if r.status != "missing" else None})
            continue
        rows += [{**row, "figure": f"{r.script.key}: {row['figure']}"} for row in r.figure.get("rows", [])]
    return rows


def render_console(results: Sequence[Result]) -> str:
    """The combined table and the scripts' wall times, as printed at the end of `make bench`."""
    lines = ["== All figures", *benchlib.table_lines(summary_rows(results)), "", "== Wall time per script"]
    lines += [f"{r.script.key:<10} {r.status:<8} {r.seconds:7.0f} s" for r in results]
    lines.append(f"{'total':<10} {'':<8} {sum(r.seconds for r in results):7.0f} s")
    return "\n".join(lines)


def render_markdown(results: Sequence[Result], machine: str, date: str) -> str:
    """BENCHMARKS.md: date, machine, the summary table, each figure (rows, text, or why it is missing)."""
    total = sum(r.seconds for r in results)
    out = ["# flexseg benchmarks", "",
           f"Written by `make bench` (benchmarks/bench.py) on {date}, in {total / 60:.1f} minutes.", "",
           f"Machine: {machine}.", "",
           "Every figure comes from its own process in the same run; ratios compare numbers of that run only "
           "(`baseline`: what `ratio` = value / baseline is taken against).", "", "## Summary", "",
           *benchlib.table_lines(summary_rows(results), markdown=True), ""]
    for r in results:
        title = r.figure.get("title", r.script.key) if r.status == "ok" else r.script.key
        out += [f"## {title}", "", f"`benchmarks/{r.script.file}`: {r.status}, {r.seconds:.0f} s.", ""]
        if r.status == "ok":
            out += [*benchlib.table_lines(r.figure.get("rows", []), markdown=True), ""]
            if r.figure.get("text"):
                out += [r.figure["text"], ""]
        else:
            out += ["```", r.detail, "```", ""]
    out += ["## How to reproduce", "",
            "    make bench                 # all figures -> BENCHMARKS.md (< 20 min on 2 cores)",
            "    .venv/bin/python benchmarks/bench.py --only limits,train   # some of them", ""]
    out += [f"    .venv/bin/python benchmarks/{s.file} {' '.join(s.args)}".rstrip() + " --json FIG.json"
            for s in SCRIPTS]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated script keys: " + ",".join(s.key for s in SCRIPTS))
    parser.add_argument("--out", type=Path, default=benchlib.REPO / "BENCHMARKS.md")
    parser.add_argument("--keep", type=Path, default=None, help="keep the figure JSONs in this folder")
    args = parser.parse_args()
    keys = args.only.split(",") if args.only else [s.key for s in SCRIPTS]
    unknown = set(keys) - {s.key for s in SCRIPTS}
    if unknown:
        parser.error(f"unknown --only key(s) {', '.join(sorted(unknown))}; use {', '.join(s.key for s in SCRIPTS)}")
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        limits = folder / "limits.json"
        results = []
        for script in (s for s in SCRIPTS if s.key in keys):
            print(f"\n### {script.key}: benchmarks/{script.file}", flush=True)
            results.append(run_script(script, folder, limits))
            r = results[-1]
            print(f"### {script.key}: {r.status} in {r.seconds:.0f} s" + (f"\n{r.detail}" if r.detail else ""),
                  flush=True)
    print("\n" + render_console(results))
    benchlib.write_text(args.out, render_markdown(results, machine_line(), date))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
