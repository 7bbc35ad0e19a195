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
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = {
    "small": dict(base_filters=16, base_kernels=3, num_layers=6, dropout_rate=0.05),
    "reference": dict(base_filters=16, base_kernels=9, num_layers=8, dropout_rate=0.04),
}


def step_rate(name: str, precision: str, size: int, batch: int, steps: int) -> tuple[float, int]:
    """(images/s, parameters) of `steps` training steps of config `name` in `precision` (a Keras policy)."""
    import keras
    import numpy as np

    from flexseg.config.schemas import ModelConfig
    from flexseg.models.registry import build_model

    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(image_height=size, image_width=size, num_classes=6, **CONFIGS[name]))
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", jit_compile=False)
        rng = np.random.default_rng(0)
        x = rng.random((batch, size, size, 3), dtype=np.float32)
        y = keras.utils.to_categorical(rng.integers(0, 6, (batch, size, size)), 6).astype(np.float32)
        model.train_on_batch(x, y)  # traces the step
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return steps * batch / (time.perf_counter() - start), model.count_params()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--with-bf16", action="store_true",
                        help="also time mixed_bfloat16 when auto is not it (emulated on CPUs without AMX: very slow)")
    args = parser.parse_args()

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
