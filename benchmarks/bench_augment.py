"""Augmentation benchmark: augmented vs plain pipeline throughput next to the tiled_cell training rate.

Prints, on generated 512x512 image / binary-mask PNG pairs read at 512x512, batch 2: images/s of the
plain pipeline, of `augment=reference` (its probabilities) and of every reference op at p = 1 (the
worst case: flips, rotation, shrink, shear, elastic, distortion, barrel, pincushion, sharpening,
brightening); then the train rate of the reference tiled_cell model (binary FlexUNet 512x512x3,
base_filters 16, base_kernels 7, num_layers 8, dropout 0.05, batch 2) on an in-memory batch. The
augmented pipeline should outpace training at least 3x. Each stage runs alone on all cores.

    python benchmarks/bench_augment.py [--pairs 32] [--batches 40] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZE, BATCH = 512, 2
REFERENCE_OPS = ("hflip", "vflip", "rotation", "shrink", "shear", "deformation", "distortion", "barrdistortion",
                 "pincdistortion", "sharpening", "brightening")


def make_pairs(root: Path, count: int) -> tuple[list[str], list[str]]:
    """`count` 512x512 pairs: textured blobs ("cells") on a textured background, white masks."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    images, masks = [], []
    for i in range(count):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        for _ in range(25):
            centre = tuple(int(v) for v in rng.integers(0, SIZE, 2))
            axes = tuple(int(v) for v in rng.integers(8, 40, 2))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        image = rng.normal(150, 25, (SIZE, SIZE, 3)) - (mask[..., None] > 0) * np.array([60, 20, 0])
        images.append(str(root / f"p{i:03d}_image.png"))
        masks.append(str(root / f"p{i:03d}_mask.png"))
        cv2.imwrite(images[-1], cv2.GaussianBlur(image.clip(0, 255).astype(np.uint8), (3, 3), 0))
        cv2.imwrite(masks[-1], mask)
    return images, masks


def reference_augment(all_on: bool):  # type: ignore[no-untyped-def]
    """The `augment=reference` preset as a typed config; with `all_on`, every reference op at p = 1."""
    from omegaconf import OmegaConf

    from flexseg.config.schemas import AugmentConfig

    merged = OmegaConf.merge(OmegaConf.structured(AugmentConfig), OmegaConf.load(REPO / "conf/augment/reference.yaml"))
    cfg = OmegaConf.to_object(merged)
    if all_on:
        for op in REFERENCE_OPS:
            getattr(cfg, op).p = 1.0
    return cfg


def pipeline_rate(images: list[str], masks: list[str], augment_cfg, batches: int) -> float:  # type: ignore[no-untyped-def]
    """images/s of `batches` batches of the training pipeline (after 3 warm-up batches)."""
    import numpy as np

    from flexseg.data.augment import build_augment
    from flexseg.data.discovery import Split
    from flexseg.data.pipeline import build_dataset

    palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    augment = build_augment(augment_cfg) if augment_cfg is not None else None
    ds = build_dataset(Split("train", tuple(images), tuple(masks)), palette, (SIZE, SIZE), 3, 1, BATCH,
                       shuffle=True, seed=0, repeat=True, augment=augment)
    it = iter(ds)
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - start)


def train_rate(steps: int) -> float:
    """images/s of train steps of the tiled_cell model on one in-memory batch (after 2 warm-up steps)."""
    import keras
    import numpy as np

    from flexseg.config.schemas import ModelConfig
    from flexseg.training.losses import get_loss
    from flexseg.models.registry import build_model

    model = build_model(ModelConfig(image_height=SIZE, image_width=SIZE, image_channels=3, num_classes=1,
                                    base_filters=16, base_kernels=7, num_layers=8, dropout_rate=0.05))
    model.compile(optimizer=keras.optimizers.Adam(1e-4, clipvalue=0.5), loss=get_loss("bce_dice_loss"))
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, SIZE, SIZE, 3), np.float32)
    y = (rng.random((BATCH, SIZE, SIZE, 1)) > 0.7).astype(np.float32)
    print(f"tiled_cell model: {model.count_params() / 1e6:.1f} M parameters", flush=True)
    for _ in range(2):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per pipeline")
    parser.add_argument("--steps", type=int, default=4, help="timed train steps")
    args = parser.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(f"{os.cpu_count()} CPUs, {len(gpus)} GPU(s); images {SIZE}x{SIZE}, batch {BATCH}", flush=True)
    with tempfile.TemporaryDirectory(prefix="flexseg-bench-augment-") as tmp:
        images, masks = make_pairs(Path(tmp), args.pairs)
        rates = {}
        for label, cfg in (("plain pipeline", None), ("augment=reference (preset p)", reference_augment(False)),
                           ("all reference ops at p=1", reference_augment(True))):
            rates[label] = pipeline_rate(images, masks, cfg, args.batches)
            print(f"{label:32s} {rates[label]:8.1f} images/s", flush=True)
    train = train_rate(args.steps)
    print(f"{'tiled_cell train step':32s} {train:8.2f} images/s ({train / BATCH:.2f} steps/s)")
    ratio = rates["all reference ops at p=1"] / train
    print(f"augmented (all ops) / training: {ratio:.1f}x (goal: >= 3x)")


if __name__ == "__main__":
    main()
