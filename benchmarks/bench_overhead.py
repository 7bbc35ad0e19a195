"""Per-epoch overhead: epoch wall time vs the sum of its training-step times, default callbacks vs minimal.

Trains FlexUNet config (b) (16 filters, 3x3, 6 levels: 7.78 M parameters, 94 MB checkpoints with
Adam) at 512x512, batch 2, on a 21-image set (3 validation, 4 test images: the epoch pictures), the
way a user does (`python -m flexseg mode=train ...` in a temp folder), and reads the line the epoch
timer logs after every epoch: wall time, training steps, validation, epoch-end work. Overhead =
(wall - steps) / wall, validation included; the first epoch (tracing) is left out. The default
callbacks train 5 epochs: their pictures and plots keep to a share of the training time, so some
epochs have them and some do not, and 4 counted epochs give a fair mean.

    python benchmarks/bench_overhead.py [--epochs 5] [--minimal-epochs 3] [--json PATH] [--keep DIR]
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

from benchlib import REFERENCE_CONFIGS, REPO, make_row, print_table, work_folder, write_json  # noqa: E402

EPOCH_LINE = re.compile(r"epoch (\d+) took ([\d.]+) s: training steps ([\d.]+) s, validation ([\d.]+) s, "
                        r"epoch-end work ([\d.]+) s")
TARGET = 10.0  # % of the epoch, default callbacks


def overrides(root: Path, epochs: int) -> list[str]:
    """The training of this figure: config (b) at 512 on a generated 21 / 3 / 4 image set."""
    b = REFERENCE_CONFIGS["b"]
    return [
        "mode=train", "dataset=synthetic", f"dataset.root={root / 'data'}", "dataset.synthetic.image_size=512",
        "dataset.synthetic.num_train=21", "dataset.synthetic.num_valid=3", "dataset.synthetic.num_test=4",
        "dataset.synthetic.num_large=0", "model.image_height=512", "model.image_width=512",
        *(f"model.{k}={v}" for k, v in b.items()), "train.batch_size=2", f"train.epochs={epochs}",
        "callbacks.early_stopping=false", f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
    ]


def parse_epochs(output: str) -> list[tuple[int, float, float, float, float]]:
    """(epoch, wall, steps, validation, rest) of every epoch-timer line in a training's output."""
    return [(int(m[1]), float(m[2]), float(m[3]), float(m[4]), float(m[5])) for m in EPOCH_LINE.finditer(output)]


def overhead(epochs: list[tuple[int, float, float, float, float]]) -> tuple[float, float, float]:
    """(overhead %, validation %, mean wall s) over the epochs after the first."""
    later = [e for e in epochs if e[0] > 1] or epochs
    wall = sum(e[1] for e in later)
    steps = sum(e[2] for e in later)
    valid = sum(e[3] for e in later)
    return 100 * (wall - steps) / wall, 100 * valid / wall, wall / len(later)


def train(root: Path, name: str, extra: list[str], epochs: int) -> list[tuple[int, float, float, float, float]]:
    args = [sys.executable, "-m", "flexseg", *overrides(root, epochs), f"hydra.run.dir={root / name}", *extra]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode:
        raise SystemExit(f"training '{name}' failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    epochs_seen = parse_epochs(proc.stdout + proc.stderr)
    if not epochs_seen:
        raise SystemExit(f"training '{name}' logged no epoch timing lines:\n{proc.stderr[-2000:]}")
    return epochs_seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the default-callbacks training")
    parser.add_argument("--minimal-epochs", type=int, default=3, help="epochs of the callbacks=minimal training")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", default=None, help="folder to keep the runs in (default: a temp folder)")
    args = parser.parse_args()
    rows, lines = [], ["| callbacks | epoch | wall s | steps s | validation s | epoch-end work s |", "|---|---|---|---|---|---|"]
    runs = (("default", [], args.epochs), ("minimal", ["callbacks=minimal"], args.minimal_epochs))
    with work_folder(args.keep and Path(args.keep), "flexseg-overhead-") as root:
        trained = [(name, train(root, name, extra, count)) for name, extra, count in runs]
    for name, epochs in trained:
        over, valid, wall = overhead(epochs)
        lines += [f"| {name} | {e} | {w:.1f} | {s:.1f} | {v:.1f} | {r:.1f} |" for e, w, s, v, r in epochs]
        target = f"<= {TARGET:.0f} %" if name == "default" else None
        rows.append(make_row(f"epoch overhead, callbacks={name} (21 x 512x512, config b, batch 2)", over, "% of epoch",
                             target=target, ok=over <= TARGET if target else None))
        rows.append(make_row(f"  of which validation, callbacks={name}", valid, "% of epoch"))
        rows.append(make_row(f"  epoch wall time, callbacks={name}", wall, "s"))
    title = "Per-epoch overhead (epoch wall time vs the sum of its training steps)"
    print_table(title, rows)
    text = ("Epoch 1 (tracing) is left out of the percentages. Epoch-end work: checkpoints (written in the "
            "background), CSV, plots, MLflow, epoch pictures.\n\n" + "\n".join(lines))
    if args.json:
        write_json(args.json, title, rows, text)


if __name__ == "__main__":
    main()
