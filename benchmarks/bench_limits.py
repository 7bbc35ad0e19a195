"""The machine's own limits (`make bench`, first figure): SGEMM and a conv2d training-step microbenchmark.

  * SGEMM: `tf.linalg.matmul` of two 2048x2048 matrices, GFLOP/s (2 n^3 FLOPs), fp32; bf16 where the
    CPU has AVX512_BF16 or AMX-BF16 (elsewhere TensorFlow emulates bf16: measured once, labelled so).
  * conv: one conv2d training step = forward + input gradient + filter gradient (3 x the forward
    FLOPs, 'same' padding, batch 2) on the shapes of the FlexUNet levels (reference config (a):
    512 px 16 ch 9x9 down to 32 px 256 ch 3x3, and config (b)'s 512 px 3x3), GFLOP/s per shape.
    The **conv limit** is the best rate over shapes and over the ways TensorFlow can run them:
    oneDNN kernels (TF_ENABLE_ONEDNN_OPTS=1), XLA (`jit_compile=True`, same process) and Eigen
    (TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's default on CPUs without AVX-512; its own process:
    TensorFlow reads the variable once, when it loads).

    python benchmarks/bench_limits.py [--json PATH] [--reps 2] [--no-variants]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (after the path setup)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BATCH = 2
# (pixels, channels in = out, kernel): FlexUNet (a) levels 0-4, and (b) level 0.
SHAPES: list[tuple[int, int, int]] = [(512, 16, 9), (256, 32, 7), (128, 64, 5), (64, 128, 3), (32, 256, 3),
                                      (512, 16, 3)]
# name -> (TF_ENABLE_ONEDNN_OPTS, jit_compile); the variants of one TF_ENABLE_ONEDNN_OPTS share a process.
VARIANTS: dict[str, tuple[str, bool]] = {"oneDNN": ("1", False), "XLA": ("1", True), "Eigen": ("0", False)}


def shape_name(px: int, ch: int, k: int) -> str:
    return f"{px}px {ch}ch {k}x{k}"


def bf16_native() -> bool:
    """The CPU computes bf16 in hardware (AVX512_BF16 or AMX-BF16)."""
    from flexseg.training.devices import cpu_info

    return bool({"avx512_bf16", "amx_bf16"} & cpu_info().flags)


def _best_seconds(fn: Any, args: tuple, reps: int) -> float:
    """Fastest of `reps` calls of `fn(*args)` after one warm-up call (tracing, allocation)."""
    fn(*args)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        out = fn(*args)
        for t in out if isinstance(out, (tuple, list)) else [out]:
            t.numpy()
        best = min(best, time.perf_counter() - start)
    return best


def sgemm_rate(dtype: str, reps: int, n: int = 2048) -> float:
    """GFLOP/s of an n x n x n matmul in `dtype`."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype="float32")
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    return 2.0 * n**3 / _best_seconds(matmul, (a,), reps) / 1e9


def conv_step_rate(px: int, ch: int, k: int, dtype: str, jit: bool, reps: int) -> float:
    """GFLOP/s of forward + input-gradient + filter-gradient of a 'same' k x k conv, ch -> ch, batch 2."""
    import tensorflow as tf

    strides = [1, 1, 1, 1]

    @tf.function(jit_compile=jit)
    def step(x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        y = tf.nn.conv2d(x, w, 1, "SAME")
        dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides,
                                            padding="SAME")
        dw = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides,
                                             padding="SAME")
        return y, dx, dw

    rng = tf.random.Generator.from_seed(0)
    x = tf.cast(rng.normal((BATCH, px, px, ch)), dtype)
    w = tf.cast(rng.normal((k, k, ch, ch)) * 0.05, dtype)
    dy = tf.cast(rng.normal((BATCH, px, px, ch)), dtype)
    flops = 3 * 2.0 * BATCH * px * px * k * k * ch * ch
    return flops / _best_seconds(step, (x, w, dy), reps) / 1e9


def measure(variant: str, reps: int) -> dict[str, Any]:
    """Measurements of one variant, in a process whose TF_ENABLE_ONEDNN_OPTS is the variant's."""
    _, jit = VARIANTS[variant]
    dtypes = ["float32"] + (["bfloat16"] if variant == "oneDNN" and bf16_native() else [])
    out: dict[str, Any] = {"variant": variant, "conv": {}, "sgemm": {}}
    if not jit:
        for dtype in dtypes:
            out["sgemm"][dtype] = sgemm_rate(dtype, reps + 2)
        if variant == "oneDNN" and "bfloat16" not in dtypes:
            out["sgemm"]["bfloat16 (emulated)"] = sgemm_rate("bfloat16", 1)
    for dtype in dtypes:
        out["conv"][dtype] = {shape_name(*s): conv_step_rate(*s, dtype, jit, reps) for s in SHAPES}
    return out


def run_variants(onednn: str, variants: list[str], reps: int) -> list[dict[str, Any]]:
    """`measure` of each variant in a fresh Python process with TF_ENABLE_ONEDNN_OPTS=`onednn`."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, __file__, "--reps", str(reps), "--child", *variants], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_figure(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(rows, markdown text) from the variants' measurements (pure: tested without TensorFlow)."""
    sgemm: dict[str, float] = {}
    for r in results:
        for dtype, rate in r["sgemm"].items():
            sgemm[dtype] = max(sgemm.get(dtype, 0.0), rate)
    rows = [benchlib.make_row(f"sgemm {dtype.replace('float32', 'fp32').replace('bfloat16', 'bf16')}", rate,
                              "GFLOP/s") for dtype, rate in sgemm.items()]
    text = ["Conv2d training step (forward + both gradients), GFLOP/s, batch 2, per shape and way of running:",
            "", "| shape | dtype | " + " | ".join(r["variant"] for r in results) + " |",
            "|---|---|" + "---:|" * len(results)]
    for dtype in ("float32", "bfloat16"):
        per_variant = [r["conv"].get(dtype, {}) for r in results]
        if not any(per_variant):
            continue
        short = "fp32" if dtype == "float32" else "bf16"
        best = {s: max(v.get(s, 0.0) for v in per_variant) for s in map(lambda s: shape_name(*s), SHAPES)}
        limit_shape = max(best, key=best.get)
        rows.append(benchlib.make_row(f"conv limit {short}", best[limit_shape], "GFLOP/s",
                                      baseline=sgemm.get(dtype)))
        rows += [benchlib.make_row(f"conv {short} {s}", rate, "GFLOP/s", baseline=best[limit_shape])
                 for s, rate in best.items()]
        text += [f"| {s} | {short} | " + " | ".join(benchlib.fmt(v.get(s)) for v in per_variant) + " |"
                 for s in best]
        text.append("")
    text.append(f"conv limit = the best rate above (ratio: to SGEMM); per-shape ratio: to the limit. "
                f"Variants: oneDNN = TF_ENABLE_ONEDNN_OPTS=1, XLA = jit_compile=True (oneDNN on), Eigen = "
                f"TF_ENABLE_ONEDNN_OPTS=0.")
    if not bf16_native():
        text.append("bf16: this CPU has neither AVX512_BF16 nor AMX-BF16; TensorFlow emulates it "
                    "(SGEMM measured once to show it, no bf16 conv).")
    return rows, "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figure JSON here")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions per measurement (best counts)")
    parser.add_argument("--no-variants", action="store_true", help="oneDNN only (no XLA, no Eigen process)")
    parser.add_argument("--child", nargs="+", choices=sorted(VARIANTS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps([measure(variant, args.reps) for variant in args.child]))
        return
    variants = ["oneDNN"] if args.no_variants else list(VARIANTS)
    results = []
    for onednn in dict.fromkeys(VARIANTS[v][0] for v in variants):
        start = time.perf_counter()
        results += run_variants(onednn, [v for v in variants if VARIANTS[v][0] == onednn], args.reps)
        print(f"[TF_ENABLE_ONEDNN_OPTS={onednn}: {time.perf_counter() - start:.0f} s]", flush=True)
    rows, text = build_figure(results)
    benchlib.print_table("Machine limits", rows)
    print(text)
    if args.json:
        benchlib.write_json(args.json, "Machine limits", rows, text)


if __name__ == "__main__":
    main()
