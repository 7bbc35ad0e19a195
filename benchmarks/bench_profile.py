"""Where a training step of reference config (a) spends its time (`make bench`, third figure).

Two fresh processes train the 125 M FlexUNet (16 filters, 9x9, 8 levels, 512x512, batch 2, float32,
compiled as flexseg compiles it) for a warm-up step and `--steps` timed steps:
  * before: TensorFlow's own default environment (on AVX2 CPUs such as AMD EPYC: oneDNN off);
  * after:  flexseg's (`devices.set_tensorflow_env`, what the CLI sets: TF_ENABLE_ONEDNN_OPTS=1 on
            x86-64), which then records `--steps` more steps with `tf.profiler` and sums the op
            events of the trace (XSpace protobuf, host plane) by op type and by phase (forward,
            backward, optimizer, loss, metrics).
`--variants` adds two more processes tried on the way (XLA, one inter-op thread): slower or within
noise on 2 cores, so not in flexseg and not in the default run.

    python benchmarks/bench_profile.py [--json PATH] [--limits LIMITS_JSON] [--steps 2] [--variants]
"""

from __future__ import annotations

import argparse
import collections
import json
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
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
# name -> (flexseg's environment, jit_compile, inter-op threads or None, profile the steps)
RUNS: dict[str, tuple[bool, bool | str, Optional[int], bool]] = {
    "before": (False, "auto", None, False),
    "after": (True, "auto", None, True),
    "XLA": (True, True, None, False),
    "1 inter-op thread": (True, "auto", 1, False),
}
PHASES = ("forward", "backward", "optimizer", "loss", "metrics and rest")


def conv_kind(op_type: str) -> Optional[str]:
    """'forward' / 'input grad' / 'filter grad' for a convolution kernel's op type, None otherwise."""
    if "Conv2D" not in op_type:
        return None
    return "filter grad" if "BackpropFilter" in op_type else "input grad" if "BackpropInput" in op_type else "forward"


def summarize_xspace(path: Path, model_scope: str, optimizer_scope: str) -> dict[str, Any]:
    """Seconds and calls per op type and seconds per phase of the TF op events of an XSpace file.

    Op events are those of the host plane named `scope/op:Type` (display name `Type`); the phase is
    the first scope: `gradient_tape` backward, `model_scope` forward, `optimizer_scope` optimizer,
    `compile_loss` loss, anything else metrics and rest.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    seconds: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    phases: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                if not meta.display_name or not meta.name.endswith(":" + meta.display_name):
                    continue
                s = event.duration_ps / 1e12
                seconds[meta.display_name] += s
                calls[meta.display_name] += 1
                scope = meta.name.split("/", 1)[0]
                if scope.rpartition("_")[2].isdigit():  # Keras uniquifies the call's scope: flexunet_1
                    scope = scope.rpartition("_")[0]
                phase = {"gradient_tape": "backward", model_scope: "forward", optimizer_scope: "optimizer",
                         "compile_loss": "loss"}.get(scope, "metrics and rest")
                phases[phase] += s
    return {"ops": dict(seconds), "calls": dict(calls), "phases": dict(phases)}


def profile_text(summary: dict[str, Any], steps: int, wall: float, top: int = 15) -> str:
    """Markdown: the op time per step by phase, by convolution kind and the `top` op types."""
    ops, calls, phases = summary["ops"], summary["calls"], summary["phases"]
    total = sum(ops.values()) or 1.0
    kinds: collections.Counter = collections.Counter()
    for op, s in ops.items():
        kinds[conv_kind(op) or "not a convolution"] += s
    lines = [f"`tf.profiler` trace of {steps} training steps of (a) in flexseg's environment: {wall / steps:.2f} s "
             f"wall per step, {total / steps:.2f} s of op time per step (ops overlap on the inter-op threads, "
             "so op time exceeds wall time).", "",
             "| phase | s / step | % of op time |", "|---|---:|---:|"]
    lines += [f"| {p} | {phases.get(p, 0.0) / steps:.2f} | {100 * phases.get(p, 0.0) / total:.1f} |" for p in PHASES]
    lines += ["", "| convolution kernels | s / step | % of op time |", "|---|---:|---:|"]
    lines += [f"| {k} | {s / steps:.2f} | {100 * s / total:.1f} |" for k, s in kinds.most_common()]
    lines += ["", "| op type | s / step | % of op time | calls / step |", "|---|---:|---:|---:|"]
    lines += [f"| {op} | {s / steps:.3f} | {100 * s / total:.1f} | {calls[op] / steps:.0f} |"
              for op, s in collections.Counter(ops).most_common(top)]
    return "\n".join(lines)


def child(run: str, steps: int, logdir: Optional[str]) -> dict[str, Any]:
    """Train (a) for a warm-up and `steps` timed steps (then `steps` profiled ones when asked)."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    _, jit, inter, profile = RUNS[run]
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    model = benchlib.compile_like_flexseg(benchlib.build_reference("a"), jit)
    times = benchlib.time_train_steps(model, 2, steps)
    out: dict[str, Any] = {"run": run, "step_s": sum(times) / steps, "flops": benchlib.conv_flops(model),
                           "onednn": bool(_pywrap_util_port.IsMklEnabled())}
    if profile and logdir:
        x, y = benchlib.random_batch(model, 2)
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        out["profiled_wall"] = time.perf_counter() - start
        tf.profiler.experimental.stop()
        trace = next(Path(logdir).rglob("*.xplane.pb"))
        out["summary"] = summarize_xspace(trace, model.name, model.optimizer.name)
    return out


def run_child(run: str, steps: int, logdir: str) -> dict[str, Any]:
    """`child(run)` in a fresh process, in TensorFlow's default or in flexseg's environment."""
    env = {k: v for k, v in os.environ.items() if k != ONEDNN}
    if RUNS[run][0]:
        from flexseg.training.devices import set_tensorflow_env

        set_tensorflow_env(env)
    done = subprocess.run([sys.executable, __file__, "--child", run, "--steps", str(steps), "--logdir", logdir],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figure JSON here")
    parser.add_argument("--limits", type=Path, default=None, help="bench_limits.py JSON: GFLOP/s as % of the limit")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--variants", action="store_true", help="also time XLA and one inter-op thread")
    parser.add_argument("--child", choices=sorted(RUNS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--logdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.logdir)))
        return
    limit = benchlib.row_value(benchlib.read_rows(args.limits), benchlib.CONV_LIMIT_FP32) if args.limits else None
    results = {}
    with tempfile.TemporaryDirectory() as logdir:
        for run in [r for r in RUNS if args.variants or r in ("before", "after")]:
            start = time.perf_counter()
            results[run] = run_child(run, args.steps, logdir)
            print(f"[{run}: {time.perf_counter() - start:.0f} s]", flush=True)
    before = 2 / results["before"]["step_s"]
    rows = []
    for run, r in results.items():
        label = f"(a) {run} (oneDNN {'on' if r['onednn'] else 'off'})"
        rows.append(benchlib.make_row(f"{label} images/s", 2 / r["step_s"], "img/s",
                                      baseline=None if run == "before" else before))
        rows.append(benchlib.make_row(f"{label} GFLOP/s", 3 * r["flops"] * 2 / r["step_s"] / 1e9, "GFLOP/s",
                                      baseline=limit))
    after = results["after"]
    text = profile_text(after["summary"], args.steps, after["profiled_wall"])
    total = sum(after["summary"]["ops"].values())
    conv = sum(s for op, s in after["summary"]["ops"].items() if conv_kind(op))
    rows.append(benchlib.make_row("(a) convolution kernels, share of op time", 100 * conv / total, "%"))
    rows.append(benchlib.make_row("(a) optimizer, share of op time",
                                  100 * after["summary"]["phases"].get("optimizer", 0.0) / total, "%"))
    steps = ", ".join(f"{run} {r['step_s']:.2f} s" for run, r in results.items())
    text = f"Seconds per training step of (a), batch 2: {steps}.\n\n" + text
    benchlib.print_table("Training profile, config (a)", rows)
    print(text)
    if args.json:
        benchlib.write_json(args.json, "Training profile, config (a)", rows, text)


if __name__ == "__main__":
    main()
