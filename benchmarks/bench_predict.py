"""Predict path (`make bench`, issue 14): `model.predict` vs the compiled `Predictor`, infer and tiled.

One process measures, for the reference FlexUNet config (b) (16 filters, 3x3, 6 levels, 6 classes,
7.78 M parameters) at 512x512 with random (seeded) weights, in float32:
  * predict s/image at batch 1 and batch 4: `model.predict(x, batch_size=N)` (the baseline: what a
    Keras user calls) and `flexseg.inference.predict.Predictor` (one `tf.function`, fixed shapes)
    on the same model, called alternately round after round (median of the rounds, after one
    untimed call each that traces); the speedup rows are baseline / Predictor, target >= 1.5x at
    batch 1;
  * the same at batch 1 for reference config (a) (16 filters, 9x9, 8 levels, 125 M parameters;
    skipped with --quick);
  * infer images/s: `flexseg.modes.infer.run` called in-process on a folder of 512x512 PNGs
    (config composed as the CLI does, a checkpoint of config (b) with the synthetic dataset's 4
    classes, `train.precision` auto, MLflow in a temporary SQLite store). It times the second of two
    runs (the first creates the MLflow store): model load, one trace, reading, predicting, writing
    masks + overlays, MLflow logging; Python and TensorFlow start-up are not included;
  * tiled 4096x4096 s: `flexseg.inference.segment.segment_file` (the path of `mode=tiled`) on a
    generated 4096x4096 RGB TIFF, tiles of 512 (config (b)'s training size), overlap 64, the
    `tiling` default batch size and Gaussian blending, colour mask + overlay written as TIFF.

    python benchmarks/bench_predict.py [--quick] [--json PATH] [--inter-op N]
    python benchmarks/bench_predict.py --only predict|reference|infer|tiled   # one figure group

--quick: fewer rounds, no config (a), 4 infer images, a 2048x2048 tiled image (~1 min on 2 cores;
the full run ~2.5 min). --inter-op N sets TensorFlow's inter-op thread pool before anything runs
(default: TensorFlow's choice, as flexseg's modes run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchlib import build_reference, make_row, print_table, write_json  # noqa: E402  (after the path setup)

TITLE = "Predict path: model.predict vs the compiled Predictor, infer, tiled"
GROUPS = ("predict", "reference", "infer", "tiled")


def alternate(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds of each call, timed alternately for `rounds` rounds after one untimed call each."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def predict_rows(config: str, batch: int, rounds: int, target: str | None) -> list[dict[str, Any]]:
    """s/image of `model.predict` and `Predictor` at `batch` for reference `config`, and the speedup."""
    from flexseg.inference.predict import Predictor

    model = build_reference(config)
    x = np.random.default_rng(0).random((batch, *model.input_shape[1:]), dtype=np.float32)
    predictor = Predictor(model, batch)
    np.testing.assert_allclose(predictor(x), model.predict(x, batch_size=batch, verbose=0), atol=1e-5)
    seconds = alternate({"model.predict": lambda: model.predict(x, batch_size=batch, verbose=0),
                         "Predictor": lambda: predictor(x)}, rounds)
    base, new = seconds["model.predict"] / batch, seconds["Predictor"] / batch
    assert predictor.function.experimental_get_tracing_count() == 1
    speedup = base / new
    where = f"({config}) 512x512 batch {batch}"
    return [make_row(f"predict s/image {where}", new, "s/image", baseline=base),
            make_row(f"predict speedup {where}", speedup, "x", target=target,
                     ok=None if target is None else speedup >= 1.5)]


def write_pngs(folder: Path, count: int, size: int) -> None:
    """`count` size x size RGB PNGs of smooth colour waves plus noise."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(count):
        base = 60 * np.sin(xx / (20.0 + i)) + 50 * np.cos(yy / 31.0)
        image = np.stack([128 + base, 128 - base, 128 + 0.5 * base.T], axis=-1) + rng.normal(0, 12, (size, size, 3))
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), np.clip(image, 0, 255).astype(np.uint8))


def compose(overrides: list[str]) -> Any:
    """The validated `Config` the CLI would build from `overrides` (as tests/conftest.py's compose)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from flexseg.config.store import register_configs
    from flexseg.config.validation import validate_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate_config(OmegaConf.to_object(hydra_compose("config", overrides=overrides)))


def infer_rows(tmp: Path, count: int) -> list[dict[str, Any]]:
    """images/s of `flexseg.modes.infer.run` on `count` 512x512 PNGs (the second of two runs)."""
    import keras

    from flexseg.context import RunContext
    from flexseg.models.registry import build_model
    from flexseg.modes import infer
    from flexseg.training.devices import resolve_precision

    write_pngs(tmp / "infer_in", count, 512)
    model_keys = ["model.image_height=512", "model.image_width=512", "model.base_filters=16", "model.base_kernels=3",
                  "model.num_layers=6", "model.dropout_rate=0.05"]
    synthetic = ["dataset.synthetic.image_size=32", "dataset.synthetic.num_train=2", "dataset.synthetic.num_valid=1",
                 "dataset.synthetic.num_test=1", "dataset.synthetic.num_large=0"]
    cfg = compose(["mode=infer", "dataset=synthetic", f"dataset.root={tmp / 'synthetic'}", *synthetic, *model_keys,
                   f"ckpt={tmp / 'b.keras'}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                   f"infer.images_dir={tmp / 'infer_in'}", f"infer.output_dir={tmp / 'infer_out'}"])
    keras.utils.set_random_seed(0)
    build_model(cfg.model).save(tmp / "b.keras")
    seconds = []
    for i in range(2):
        start = time.perf_counter()
        infer.run(cfg, RunContext(tmp / f"infer_run{i}"))
        seconds.append(time.perf_counter() - start)
    precision = resolve_precision(cfg.train.precision).value
    print(f"[infer: {count} images, batch {cfg.infer.batch_size}, precision {precision}: "
          f"first run {seconds[0]:.1f} s (creates the MLflow store), second {seconds[1]:.1f} s]", flush=True)
    return [make_row(f"infer images/s, {count} 512x512 PNGs, (b) batch {cfg.infer.batch_size}",
                     count / seconds[1], "images/s")]


def tiled_rows(tmp: Path, size: int) -> list[dict[str, Any]]:
    """Seconds of `segment_file` on a size x size TIFF with config (b), tiles 512, overlap 64."""
    from bench_tiled import write_test_image

    from flexseg.config.schemas import TilingConfig
    from flexseg.data.readers import ImageOptions
    from flexseg.inference.predict import Predictor
    from flexseg.inference.segment import TiledOptions, segment_file

    image = tmp / f"tiled_{size}.tif"
    write_test_image(image, size)
    t = TilingConfig()
    model = build_reference("b")
    predictor = Predictor(model, t.batch_size)
    predictor(np.zeros((1, 512, 512, 3), np.float32))  # the trace, as a mode's first batch: not timed
    options = TiledOptions(512, 64, t.batch_size, t.blend.value, False, "auto", False)
    palette = np.random.default_rng(0).integers(0, 256, (6, 3), dtype=np.uint8)
    start = time.perf_counter()
    result = segment_file(image, predictor, options, ImageOptions(3), palette, tmp / "tiled_out")
    seconds = time.perf_counter() - start
    print(f"[tiled: {size}x{size}, {result.tiles} tiles of 512, overlap 64, batch {t.batch_size}: {seconds:.1f} s, "
          f"{seconds / result.tiles:.3f} s/tile]", flush=True)
    return [make_row(f"tiled {size}x{size} s, (b) tiles 512 overlap 64", seconds, "s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no config (a), smaller infer/tiled")
    parser.add_argument("--json", type=Path, default=None, help="write the figure JSON here")
    parser.add_argument("--only", choices=GROUPS, action="append", help="figure group(s) to run (default: all)")
    parser.add_argument("--inter-op", type=int, default=0, help="TensorFlow inter-op threads (0: its default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf

    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    groups = args.only or [g for g in GROUPS if not (args.quick and g == "reference")]
    print(f"CPU threads {os.cpu_count()}, TensorFlow {tf.__version__}, inter-op threads "
          f"{args.inter_op or 'default'}, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
        tmp = Path(folder)
        if "predict" in groups:
            rows += predict_rows("b", 1, 3 if args.quick else 7, ">= 1.5x")
            rows += predict_rows("b", 4, 2 if args.quick else 3, None)
        if "reference" in groups:
            rows += predict_rows("a", 1, 3, ">= 1.5x")
        if "infer" in groups:
            rows += infer_rows(tmp, 4 if args.quick else 8)
        if "tiled" in groups:
            rows += tiled_rows(tmp, 2048 if args.quick else 4096)
    print_table(f"{TITLE} ({time.perf_counter() - started:.0f} s)", rows)
    if args.json:
        write_json(args.json, TITLE, rows)


if __name__ == "__main__":
    main()
