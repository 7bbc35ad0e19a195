"""Data pipeline benchmark: throughput and peak memory of the streaming tf.data pipeline.

Prints, on generated 512x512 RGB image / colour-mask PNG pairs: images/s for decode + resize (to
--size) + nearest-colour mask decode + batching, and the peak RSS of a fresh process iterating one
epoch of 100 vs 2000 pairs (memory must not grow with the dataset: O(batch), not O(dataset)).

    python benchmarks/bench_data.py [--pairs 2000] [--size 256] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PALETTE = [(0, 0, 0), (0, 255, 0), (255, 255, 0), (0, 255, 255), (255, 0, 0), (0, 0, 255)]  # lizard colours


def make_pairs(root: Path, count: int, unique: int = 50, size: int = 512) -> Path:
    """`count` pairs under root/{images,masks}; `unique` rendered ones, the rest file copies."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = f"p{i:05d}.png"
        if i < unique:
            labels = np.zeros((size, size), np.uint8)
            for _ in range(12):
                cx, cy, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(10, 60))]
                cv2.circle(labels, (cx, cy), r, int(rng.integers(1, len(PALETTE))), -1)
            mask = np.array(PALETTE, np.uint8)[labels]
            image = (rng.normal(120, 30, (size, size, 3)) + mask * 0.3).clip(0, 255).astype(np.uint8)
            cv2.imwrite(str(root / "images" / name), image)
            cv2.imwrite(str(root / "masks" / name), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
        else:
            src = f"p{i % unique:05d}.png"
            shutil.copyfile(root / "images" / src, root / "images" / name)
            shutil.copyfile(root / "masks" / src, root / "masks" / name)
    return root


def iterate(root: Path, count: int, size: int, batch: int) -> tuple[float, int]:
    """Iterate one epoch over the first `count` pairs; returns (seconds, pairs seen)."""
    import numpy as np

    from flexseg.config.schemas import ClassConfig
    from flexseg.data.discovery import Split
    from flexseg.data.masks import build_palette
    from flexseg.data.pipeline import build_dataset

    names = sorted(p.name for p in (root / "images").iterdir())[:count]
    split = Split("train", tuple(str(root / "images" / n) for n in names), tuple(str(root / "masks" / n) for n in names))
    palette = build_palette([ClassConfig(f"c{i}", list(c)) for i, c in enumerate(PALETTE)])
    ds = build_dataset(split, palette, (size, size), 3, len(PALETTE), batch, shuffle=True)
    for _ in ds.take(2):  # warm-up: graph tracing, thread pools
        pass
    start, seen = time.perf_counter(), 0
    for x, _ in ds:
        seen += int(np.asarray(x).shape[0])
    return time.perf_counter() - start, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--size", type=int, default=256, help="model input size the 512x512 pairs are resized to")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        seconds, seen = iterate(Path(args.child[0]), int(args.child[1]), args.size, args.batch)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{seconds:.3f} {seen} {rss_mb:.1f}")
        return
    with tempfile.TemporaryDirectory(prefix="flexseg-bench-") as tmp:
        t0 = time.perf_counter()
        root = make_pairs(Path(tmp), args.pairs)
        print(f"generated {args.pairs} 512x512 pairs in {time.perf_counter() - t0:.1f}s ({os.cpu_count()} CPUs)")
        results = {}
        for count in (args.small, args.pairs):
            cmd = [sys.executable, __file__, "--child", str(root), str(count), "--size", str(args.size),
                   "--batch", str(args.batch)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-3:]
            seconds, seen, rss = float(out[0]), int(out[1]), float(out[2])
            results[count] = rss
            print(f"epoch of {count:5d} pairs: {seen / seconds:7.1f} images/s "
                  f"(decode + resize to {args.size} + mask decode, batch {args.batch}), peak RSS {rss:7.1f} MB")
        growth = results[args.pairs] - results[args.small]
        print(f"peak RSS growth {args.small} -> {args.pairs} pairs: {growth:+.1f} MB (goal: within 300 MB)")


if __name__ == "__main__":
    main()
