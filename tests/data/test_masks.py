"""Colour masks decode to class indices by nearest colour; TF and numpy paths agree."""

from __future__ import annotations

import numpy as np

from flexseg.config import ClassConfig
from flexseg.data.masks import build_palette, compute_labels_np, decode_mask

CLASSES = [ClassConfig("bg", [0, 0, 0]), ClassConfig("consep", [0, 255, 0]), ClassConfig("glas", [255, 0, 0]),
           ClassConfig("crag", [255, 255, 0])]


def test_nearest_colour_absorbs_noise_and_antialiasing() -> None:
    palette = build_palette(CLASSES)
    mask = np.array([[[3, 2, 0], [10, 240, 12]], [[250, 5, 3], [240, 230, 20]]], np.uint8)  # JPEG-ish noise
    np.testing.assert_array_equal(compute_labels_np(mask, palette), [[0, 1], [2, 3]])


def test_tf_and_numpy_decoders_agree() -> None:
    palette = build_palette(CLASSES)
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(decode_mask(mask, palette)), compute_labels_np(mask, palette))


def test_grayscale_mask_decodes_for_black_white_classes() -> None:
    palette = build_palette([ClassConfig("bg", [0, 0, 0]), ClassConfig("tumor", [255, 255, 255])])
    gray = np.array([[0, 30, 200, 255]], np.uint8)
    np.testing.assert_array_equal(compute_labels_np(gray, palette), [[0, 0, 1, 1]])
