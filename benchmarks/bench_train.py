"""Training throughput of the two reference configs (`make bench`, second figure): images/s, GFLOP/s, % of the conv limit.

(a) 16 filters, 9x9 kernels, 8 levels (125.0 M parameters, 115.7 GFLOP per 512x512 forward) and
(b) 3x3 kernels, 6 levels (7.78 M, 30.0 GFLOP), 512x512, batch 2, 6 classes, compiled as flexseg
compiles them (Adam 1e-4, cross-entropy, the default metrics, jit_compile auto) in flexseg's
TensorFlow environment (`devices.set_tensorflow_env`: oneDNN on x86-64). FLOPs are counted from the
built model's convolutions (`benchlib.conv_flops`); a training step is 3x the forward. float32 and
`train.precision=auto` (one row when auto is float32, as on CPUs without AMX-BF16).
Target: (a) in float32 at >= 65 % of the machine's fp32 conv limit (bench_limits.py).

    python benchmarks/bench_train.py [--json PATH] [--limits LIMITS_JSON] [--steps-a 2] [--steps-b 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (after the path setup)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
TARGET = 0.65  # of the fp32 conv limit, config (a) in float32


def conv_limits(limits_json: Optional[Path]) -> dict[str, Optional[float]]:
    """{'float32': GFLOP/s, 'mixed_bfloat16': GFLOP/s or None} from a bench_limits JSON, measured
    here (oneDNN only, a quick run) when none is given."""
    if limits_json is None:
        with tempfile.TemporaryDirectory() as tmp:
            limits_json = Path(tmp) / "limits.json"
            subprocess.run([sys.executable, str(Path(__file__).with_name("bench_limits.py")), "--no-variants",
                            "--json", str(limits_json)], check=True, stdout=subprocess.DEVNULL)
            rows = benchlib.read_rows(limits_json)
    else:
        rows = benchlib.read_rows(limits_json)
    return {"float32": benchlib.row_value(rows, benchlib.CONV_LIMIT_FP32),
            "mixed_bfloat16": benchlib.row_value(rows, "conv limit bf16")}


def figure_rows(name: str, precision: str, rate: float, flops: float, limit: Optional[float]) -> list[dict[str, Any]]:
    """The img/s and GFLOP/s rows of one (config, precision); the (a) float32 row carries the target."""
    gflops = 3 * flops * rate / 1e9
    label = f"train ({name}) {'fp32' if precision == 'float32' else precision}"
    target = ok = None
    if name == "a" and precision == "float32":
        target = f">= {TARGET:.0%} of conv limit"
        ok = None if limit is None else gflops >= TARGET * limit
    return [benchlib.make_row(f"{label} images/s", rate, "img/s"),
            benchlib.make_row(f"{label} GFLOP/s", gflops, "GFLOP/s", baseline=limit, target=target, ok=ok)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figure JSON here")
    parser.add_argument("--limits", type=Path, default=None, help="bench_limits.py JSON (else measured here)")
    parser.add_argument("--steps-a", type=int, default=2, help="timed steps of config (a), after a warm-up")
    parser.add_argument("--steps-b", type=int, default=3, help="timed steps of config (b), after a warm-up")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    limits = conv_limits(args.limits)
    from flexseg.training.devices import set_tensorflow_env

    set_tensorflow_env()  # as the flexseg CLI does, before TensorFlow loads
    from flexseg.config.choices import Precision
    from flexseg.training.devices import describe_devices, resolve_precision

    auto = resolve_precision(Precision.auto).value
    rows: list[dict[str, Any]] = []
    notes = [f"{describe_devices()}; train.precision=auto -> {auto}; batch {args.batch}, {args.size}x{args.size}; "
             f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}.", "",
             "| config | precision | parameters | GFLOP / forward | images/s | GFLOP/s | % of conv limit |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, steps in (("a", args.steps_a), ("b", args.steps_b)):
        for precision in dict.fromkeys(["float32", auto]):
            start = time.perf_counter()
            rate, params, flops = benchlib.train_step_rate(name, precision, args.size, args.batch, steps)
            limit = limits["float32" if precision == "float32" else "mixed_bfloat16"]
            new = figure_rows(name, precision, rate, flops, limit)
            rows += new
            share = benchlib.fmt(100 * new[1]["ratio"]) if new[1]["ratio"] else "n/a"
            notes.append(f"| ({name}) | {precision}{' (auto)' if precision == auto else ''} | {params / 1e6:.2f} M | "
                         f"{flops / 1e9:.1f} | {rate:.3f} | {new[1]['value']:.1f} | {share} |")
            print(f"[({name}) {precision}: {time.perf_counter() - start:.0f} s]", flush=True)
    benchlib.print_table("Training throughput", rows)
    if args.json:
        benchlib.write_json(args.json, "Training throughput", rows, "\n".join(notes))


if __name__ == "__main__":
    main()
