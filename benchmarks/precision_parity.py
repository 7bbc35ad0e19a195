"""Does `train.precision=auto` reach the float32 score? The demo's model trained to its plateau twice.

`auto` is float32 on CPUs without AMX-BF16 and bf16 on AMX CPUs and Ampere+ GPUs, so one training is
`auto` and the other the precision auto did not pick here: float32 and bf16 are both trained on
every machine (bf16 is emulated, slowly, on CPUs without AMX). 16 epochs of 32 synthetic 64x64
images each; prints both best validation dice scores and exits 1 when auto scores under 0.8 or more
than 0.01 away from the other (~2-3 min on 2 cores; part of `make bench-precision`).

    python benchmarks/precision_parity.py [--epochs 16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (puts the repo on sys.path)

TOLERANCE = 0.01
FLOOR = 0.8


def demo_overrides(root: Path, epochs: int) -> list[str]:
    """The demo recipe on a small generated set, minimal callbacks, no checkpoints."""
    return ["experiment=demo", "dataset=synthetic", "model.image_height=64", "model.image_width=64",
            "dataset.synthetic.image_size=64", "dataset.synthetic.num_train=32", "dataset.synthetic.num_valid=8",
            "dataset.synthetic.num_test=4", "dataset.synthetic.num_large=1", "dataset.synthetic.large_size=96",
            "train.batch_size=4", f"train.epochs={epochs}", "callbacks=minimal", "callbacks.checkpoint=false",
            "callbacks.last_checkpoint=false", "train.metrics=[dice]",
            f"tracking.uri=sqlite:///{root / 'mlflow.db'}", f"dataset.root={root / 'synthetic'}"]


def train(root: Path, precision: str, epochs: int) -> float:
    """Best validation dice of a demo training in `precision`, through the CLI as a user runs it."""
    args = [sys.executable, "-m", "flexseg", *demo_overrides(root, epochs), f"train.precision={precision}",
            f"hydra.run.dir={root / precision}"]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(benchlib.REPO)})
    found = re.search(r"results: .*\bbest_val_dice=([\d.]+)", proc.stdout + proc.stderr)
    if proc.returncode or not found:
        raise SystemExit(f"training in {precision} failed:\n{proc.stderr[-3000:]}")
    return float(found[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--keep", default=None, help="folder to keep the runs in (default: a temp folder)")
    args = parser.parse_args()
    from flexseg.training.devices import resolve_precision

    auto = resolve_precision("auto").value
    other = "mixed_bfloat16" if auto == "float32" else "float32"
    with benchlib.work_folder(args.keep and Path(args.keep), "flexseg-parity-") as root:
        dice = {precision: train(root, precision, args.epochs) for precision in ("auto", other)}
    ok = dice["auto"] > FLOOR and abs(dice["auto"] - dice[other]) <= TOLERANCE
    print(f"train.precision=auto ({auto}): best val_dice {dice['auto']:.4f}; {other}: {dice[other]:.4f}; "
          f"{'same score' if ok else 'NOT the same score'} (auto > {FLOOR}, gap <= {TOLERANCE})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
