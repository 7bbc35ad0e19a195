"""Tiled inference benchmark (`make bench-tiled`): throughput against the model's own limit, peak RSS.

For a generated SIZE x SIZE RGB TIFF and the `tiling` defaults (`TilingConfig`, the same values as
conf/tiling/default.yaml), one fresh process measures, in wall and CPU (all threads) seconds:
  * tiled:   `flexseg.inference.segment.segment_file` end to end (lazy TIFF read, batched tiles,
             Gaussian blending, colour mask + overlay written as tiled zlib TIFF), seconds and MP/s
             of image pixels;
  * forward: the model alone (`Predictor`, same model, same batch size) on non-overlapping
             tiles covering the same number of pixels: the model's forward-only limit (best of a
             run before and after the tiled one);
  * ratios:  tiled / forward in image pixels (end to end, overlap recompute included), and in
             pixels the model actually sees (the pipeline's own efficiency); the recompute factor
             (tile pixels / image pixels) is geometry: ~(tile / (tile - overlap))**2.
A second fresh process runs the tiled step on a HUGE x HUGE TIFF and reports its peak RSS.
Peak RSS is `ru_maxrss` of each fresh process (TensorFlow + model alone included, also printed).

The model is a FlexUNet with random (seeded) weights: base_filters 16, num_layers 5, base_kernels
3, 3 classes, no normalisation; CPU-feasible, and tiling cost does not depend on the weights.

    python benchmarks/bench_tiled.py                         # 4096^2 and 16384^2 (a few minutes)
    python benchmarks/bench_tiled.py --size 1024 --huge 2048 # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from flexseg.config.schemas import TilingConfig  # noqa: E402  (after the path setup)
from flexseg.inference.sinks import TiffSink  # noqa: E402
from flexseg.inference.sliding_window import count_tiles, resolve_overlap  # noqa: E402

MODEL = {"base_filters": 16, "num_layers": 5, "base_kernels": 3, "num_classes": 3, "dropout_rate": 0.0}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_test_image(path: Path, size: int, rows: int = 256) -> None:
    """A size x size RGB TIFF (tiled, zlib) of smooth colour waves plus noise, streamed band by band."""
    noise = np.random.default_rng(0).normal(0, 12, (rows, size + 97, 3)).astype(np.float32)
    sink = TiffSink(path, size, size)
    x = np.arange(size, dtype=np.float32)
    for top in range(0, size, rows):
        y = np.arange(top, min(top + rows, size), dtype=np.float32)[:, None]
        base = 60 * np.sin(x / 37.0) + 50 * np.cos(y / 53.0)
        band = np.stack([128 + base, 128 - base, 128 + 0.5 * base[::-1]], axis=-1)
        shift = (top // rows * 31) % 97  # reuse one noise block, shifted: no visible repeats, 10x faster
        band += noise[: len(band), shift : shift + size]
        sink.write_rows(np.clip(band, 0, 255).astype(np.uint8))
    sink.close()


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Runs in a fresh process: build the model, time forward-only and tiled, report peak RSS."""
    import keras

    from flexseg.config.schemas import ModelConfig
    from flexseg.models.registry import build_model
    from flexseg.data.readers import ImageOptions
    from flexseg.inference.predict import Predictor
    from flexseg.inference.segment import TiledOptions, segment_file

    keras.utils.set_random_seed(0)
    t = TilingConfig()
    tile = args.tile or t.tile_size
    overlap = t.overlap if args.overlap is None else args.overlap
    batch = args.batch or t.batch_size
    model = build_model(ModelConfig(image_height=tile, image_width=tile, **MODEL))
    predictor = Predictor(model, batch)
    tiles = np.random.default_rng(1).random((batch, tile, tile, 3), dtype=np.float32)
    predictor(tiles)  # build + trace once
    out: dict[str, float] = {"baseline_rss_mib": peak_rss_mib()}
    size = args.size
    n_forward = -(-(size * size) // (tile * tile * batch))  # batches of non-overlapping tiles

    def forward_seconds() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n_forward):
            predictor(tiles)
        return time.perf_counter() - wall, time.process_time() - cpu

    forward = [forward_seconds()] if args.forward else []
    options = TiledOptions(tile, overlap, batch, t.blend, t.tta, "tiff", False)
    wall, cpu = time.perf_counter(), time.process_time()
    segment_file(Path(args.input), predictor, options, ImageOptions(3), np.array([[0, 0, 0], [0, 255, 0], [255, 0, 0]], np.uint8),
                 Path(args.out))
    out["tiled_s"], out["tiled_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
    out["peak_rss_mib"] = peak_rss_mib()
    if args.forward:
        forward.append(forward_seconds())
        scale = size * size / (n_forward * batch * tile * tile)  # to exactly the image's pixel count
        out["forward_s"] = min(f[0] for f in forward) * scale
        out["forward_cpu_s"] = min(f[1] for f in forward) * scale
    out.update(tile=tile, overlap=resolve_overlap(overlap, tile), batch=batch,
               tiles=count_tiles(size, size, tile, overlap), tta=float(t.tta))
    return out


def run_worker(args: argparse.Namespace, size: int, image: Path, forward: bool) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", "--size", str(size), "--input", str(image),
           "--out", str(image.parent / f"out_{size}"), "--tile", str(args.tile or 0), "--batch", str(args.batch or 0)]
    if args.overlap is not None:
        cmd += ["--overlap", str(args.overlap)]
    if forward:
        cmd.append("--forward")
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        sys.exit(f"worker for {size}^2 failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(size: int, r: dict[str, float]) -> None:
    mp = size * size / 1e6
    seen = r["tiles"] * r["tile"] ** 2 / 1e6  # megapixels through the model in the tiled run
    print(f"\n{size}x{size} ({mp:.1f} MP), tile {r['tile']:.0f}, overlap {r['overlap']:.0f}, batch {r['batch']:.0f}, "
          f"gaussian blend, tta {bool(r['tta'])}, {r['tiles']:.0f} tiles = {seen:.1f} MP through the model "
          f"(recompute x{seen / mp:.2f})")
    print(f"  tiled        {r['tiled_s']:7.1f} s wall {r['tiled_cpu_s']:7.1f} s CPU  "
          f"{mp / r['tiled_s']:6.2f} MP/s (image)  {seen / r['tiled_s']:6.2f} MP/s (model input)")
    if "forward_s" in r:
        limit = mp / r["forward_s"]
        print(f"  forward-only {r['forward_s']:7.1f} s wall {r['forward_cpu_s']:7.1f} s CPU  "
              f"{limit:6.2f} MP/s (model alone on {mp:.1f} MP: non-overlapping tiles, best of 2)")
        for what, tiled, forward in (("wall", r["tiled_s"], r["forward_s"]), ("CPU ", r["tiled_cpu_s"],
                                                                              r["forward_cpu_s"])):
            print(f"  ratio tiled/forward ({what}): {forward / tiled:.2f} end to end (image pixels), "
                  f"{forward / tiled * seen / mp:.2f} pipeline efficiency (pixels the model sees)")
    print(f"  peak RSS     {r['peak_rss_mib']:8.0f} MiB (TensorFlow + model + one batch alone: "
          f"{r['baseline_rss_mib']:.0f} MiB); load average now {os.getloadavg()[0]:.1f} "
          "(> 0 from other processes makes wall times noisy: compare the CPU ratios)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="throughput image edge, pixels")
    parser.add_argument("--huge", type=int, default=16384, help="peak-RSS image edge, pixels (0: skip)")
    parser.add_argument("--tile", type=int, default=0, help="tile size (0: tiling default)")
    parser.add_argument("--overlap", type=float, default=None, help="overlap (default: tiling default)")
    parser.add_argument("--batch", type=int, default=0, help="tiles per batch (0: tiling default)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the test images go (default: temp)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--forward", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"model: FlexUNet {MODEL}, random weights; CPU threads: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size, forward in ((args.size, True), (args.huge, False)):
            if size <= 0:
                continue
            image = Path(tmp) / f"image_{size}.tif"
            started = time.perf_counter()
            write_test_image(image, size)
            print(f"\n[generated {image.name}: {image.stat().st_size / 2**20:.0f} MiB in "
                  f"{time.perf_counter() - started:.0f} s]", flush=True)
            report(size, run_worker(args, size, image, forward))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
