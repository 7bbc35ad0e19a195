"""Training step rate in float32 vs `train.precision=auto` (and bf16) for the two reference configs.

Prints images/s of `model.train_on_batch` (after one warm-up step that traces the function) and the
ratio to float32, for a 512x512 FlexUNet with 3x3 kernels and 6 levels and for the reference
experiments' model (16 filters, 9x9 kernels, 8 levels: about 125 M parameters). On a CPU without
AMX-BF16, `auto` is float32 and bf16 runs emulated (10x slower: add --with-bf16 to see it); on AMX
CPUs and Ampere+ GPUs auto is bf16.

    python benchmarks/bench_precision.py [--steps 3] [--batch 2] [--size 512] [--only small|reference] [--with-bf16]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (after the path setup; puts the repo on sys.path too)

CONFIGS = {"small": "b", "reference": "a"}  # benchlib.REFERENCE_CONFIGS


def step_rate(name: str, precision: str, size: int, batch: int, steps: int) -> tuple[float, int]:
    """(images/s, parameters) of `steps` training steps of config `name` in `precision` (a Keras policy)."""
    rate, params, _ = benchlib.train_step_rate(CONFIGS[name], precision, size, batch, steps)
    return rate, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--with-bf16", action="store_true",
                        help="also time mixed_bfloat16 when auto is not it (emulated on CPUs without AMX: very slow)")
    args = parser.parse_args()

    from flexseg.training.devices import set_tensorflow_env

    set_tensorflow_env()  # as the flexseg CLI does, before TensorFlow loads
    from flexseg.config.choices import Precision
    from flexseg.training.devices import describe_devices, resolve_precision

    auto = resolve_precision(Precision.auto).value
    print(f"devices: {describe_devices()}; train.precision=auto -> {auto}")
    print(f"{'config':<10} {'params':>8} {'precision':<15} {'images/s':>9} {'vs fp32':>8}")
    for name in [args.only] if args.only else list(CONFIGS):
        base = None
        for precision in dict.fromkeys(["float32", auto, *(["mixed_bfloat16"] if args.with_bf16 else [])]):
            rate, params = step_rate(name, precision, args.size, args.batch, args.steps)
            base = base or rate
            label = f"{precision}{' (auto)' if precision == auto else ''}"
            print(f"{name:<10} {params / 1e6:>7.1f}M {label:<15} {rate:>9.2f} {rate / base:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
