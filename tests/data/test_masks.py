"""Colour masks decode to class indices by nearest colour; TF and numpy paths agree."""

from __future__ import annotations

import numpy as np

from flexseg.config.schemas import ClassConfig
from flexseg.data.masks import build_palette, match_colors

CLASSES = [ClassConfig("bg", [0, 0, 0]), ClassConfig("consep", [0, 255, 0]), ClassConfig("glas", [255, 0, 0]),
           ClassConfig("crag", [255, 255, 0])]


def test_nearest_colour_absorbs_noise_and_antialiasing() -> None:
    palette = build_palette(CLASSES)
    mask = np.array([[[3, 2, 0], [10, 240, 12]], [[250, 5, 3], [240, 230, 20]]], np.uint8)  # JPEG-ish noise
    np.testing.assert_array_equal(match_colors(mask, palette)[0], [[0, 1], [2, 3]])


def test_fast_matching_equals_brute_force_nearest_colour() -> None:
    palette = build_palette(CLASSES)
    rng = np.random.default_rng(0)
    mask = palette[rng.integers(0, len(palette), (32, 32))]
    mask[::3] = rng.integers(0, 256, (11, 32, 3), dtype=np.uint8)  # a third of the rows: arbitrary colours
    dist = ((mask[..., None, :].astype(int) - palette.astype(int)) ** 2).sum(-1)
    labels, unmatched = match_colors(mask, palette, tolerance=60)
    np.testing.assert_array_equal(labels, dist.argmin(-1))
    assert unmatched == int((dist.min(-1) > 60**2).sum()) > 0


def test_grayscale_mask_decodes_for_black_white_classes() -> None:
    palette = build_palette([ClassConfig("bg", [0, 0, 0]), ClassConfig("tumor", [255, 255, 255])])
    gray = np.array([[0, 30, 200, 255]], np.uint8)
    np.testing.assert_array_equal(match_colors(gray, palette)[0], [[0, 0, 1, 1]])
