"""Tiled prediction with a real (tiny, random-weight) FlexUNet: tiled vs whole-image, and through the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from conftest import TINY, compose, run_cli


@pytest.fixture(scope="module")
def tiny_model():  # type: ignore[no-untyped-def]
    import keras

    from flexseg.models.registry import build_model

    # Random weights at glorot scale: under he_normal (the training default) random activations grow with
    # depth and the zero padding at tile borders weighs more (max |p| difference ~0.02); the tiling under
    # test does not depend on the initializer.
    # No normalisation: instance normalisation (the default recipe) normalises each tile by its own statistics,
    # so tiles differ from one whole-image pass by design; the blending under test does not depend on it.
    cfg = compose([*TINY, "model.num_layers=4", "model.base_filters=8", "model.kernel_initializer=glorot_uniform",
                   "model.normalization=none"])
    keras.utils.set_random_seed(0)
    return build_model(cfg.model)


def smooth_image(height: int, width: int) -> np.ndarray:
    image = cv2.GaussianBlur(np.random.default_rng(0).random((height, width, 3), dtype=np.float32), (0, 0), 3)
    return (image - image.min()) / (image.max() - image.min())


def test_tiled_equals_whole_image_prediction_within_blending_tolerance(tiny_model):
    """Acceptance: an image that fits in one pass; <= 0.5% of labels differ at overlap 64."""
    from flexseg.inference.predict import Predictor
    from flexseg.inference.sliding_window import predict_tiled

    image = smooth_image(256, 320)
    predictor = Predictor(tiny_model, 4)
    whole = predictor.at_size(256, 320)(image[None])[0]
    tiled = predict_tiled(image, predictor.at_size(128, 128), 128, 64)  # not the training size (32)
    assert tiled.shape == whole.shape
    assert np.mean(tiled.argmax(-1) != whole.argmax(-1)) <= 0.005
    assert np.abs(tiled - whole).max() < 1e-3


@pytest.mark.slow
def test_cli_tiled_tiff_and_png_with_tta_probabilities_and_scores(tmp_path: Path) -> None:
    import keras
    import mlflow

    from flexseg.models.registry import build_model

    cfg = compose(TINY)  # the checkpoint must match the CLI's model config
    keras.utils.set_random_seed(1)
    build_model(cfg.model).save(tmp_path / "tiny.keras")
    images, masks = tmp_path / "slides" / "images", tmp_path / "slides" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rgb = (smooth_image(200, 300) * 255).astype(np.uint8)
    tifffile.imwrite(images / "slide.tif", rgb, tile=(64, 64), compression="zlib", photometric="rgb")
    cv2.imwrite(str(images / "small.png"), rgb[:20, :25, ::-1])  # smaller than a tile (TINY: 32)
    cv2.imwrite(str(masks / "slide.png"), np.zeros((200, 300, 3), np.uint8))
    run_cli([*TINY, "mode=tiled", f"ckpt={tmp_path / 'tiny.keras'}", f"dataset.root={tmp_path}/synthetic",
             f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=tiled", f"tiling.images_dir={images}",
             f"tiling.masks_dir={masks}", "tiling.tta=true", "tiling.save_probabilities=true", "tiling.overlap=0.25",
             f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    out = tmp_path / "run" / "tiled"
    assert tifffile.imread(out / "masks" / "slide.tif").shape == (200, 300, 3)
    assert tifffile.imread(out / "overlays" / "slide.tif").shape == (200, 300, 3)
    assert tifffile.imread(out / "probabilities" / "slide.tif").shape == (200, 300, 4)  # 4 synthetic classes
    assert cv2.imread(str(out / "masks" / "small.png")).shape == (20, 25, 3)  # auto: PNG in, PNG out
    with (out / "tiled_metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == ["slide", "all"]
    assert {"mean_foreground_dice", "mean_foreground_iou", "dice_disk", "iou_background"} <= set(rows[0])
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("tiled").experiment_id])[0]
    assert run.data.tags["mode"] == "tiled" and "tiled_mean_foreground_iou" in run.data.metrics
