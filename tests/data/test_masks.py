"""Colour masks decode to class indices by nearest colour; TF and numpy paths agree."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_data import EDGE_PALETTE, antialiased_mask

from flexseg.config.schemas import ClassConfig
from flexseg.data.masks import build_palette, check_unmatched, foreign_colors, format_foreign, match_colors
from flexseg.data.readers import MaskOptions
from flexseg.data.mask_files import foreign_values, read_foreign, read_labels
from flexseg.errors import FlexsegError

CLASSES = [ClassConfig("bg", [0, 0, 0]), ClassConfig("consep", [0, 255, 0]), ClassConfig("glas", [255, 0, 0]),
           ClassConfig("crag", [255, 255, 0])]


def test_nearest_colour_absorbs_noise_and_antialiasing() -> None:
    palette = build_palette(CLASSES)
    mask = np.array([[[3, 2, 0], [10, 240, 12]], [[250, 5, 3], [240, 230, 20]]], np.uint8)  # JPEG-ish noise
    np.testing.assert_array_equal(match_colors(mask, palette)[0], [[0, 1], [2, 3]])


def _brute_force(mask: np.ndarray, palette: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """The rule pixel by pixel: near a class -> nearest class; near a segment -> its nearer end."""
    pix = mask.reshape(-1, 3).astype(float)
    pal = palette.astype(float)
    dist = np.sqrt(((pix[:, None] - pal[None]) ** 2).sum(-1))
    labels, foreign = dist.argmin(-1), dist.min(-1) > tol
    for i in np.flatnonzero(foreign):
        best = np.inf
        for a, b in itertools.combinations(range(len(pal)), 2):
            t = (pix[i] - pal[a]) @ (pal[b] - pal[a]) / ((pal[b] - pal[a]) @ (pal[b] - pal[a]))
            off = np.linalg.norm(pix[i] - pal[a] - t * (pal[b] - pal[a]))
            if 0 <= t <= 1 and off <= tol and off < best:
                best, labels[i], foreign[i] = off, (a if t <= 0.5 else b), False
    return labels.reshape(mask.shape[:2]), foreign.reshape(mask.shape[:2])


def test_fast_matching_equals_brute_force_rule() -> None:
    palette = build_palette(CLASSES)
    rng = np.random.default_rng(0)
    mask = palette[rng.integers(0, len(palette), (32, 32))]
    mask[::3] = rng.integers(0, 256, (11, 32, 3), dtype=np.uint8)  # a third of the rows: arbitrary colours
    labels, unmatched = match_colors(mask, palette, tolerance=60)
    want, foreign = _brute_force(mask, palette, 60)
    np.testing.assert_array_equal(labels, want)
    assert unmatched == int(foreign.sum()) > 0
    counts = dict(foreign_colors(mask, palette, 60))
    assert sum(counts.values()) == unmatched
    assert all(foreign[(mask == c).all(-1)].all() for c in counts)


def test_antialiased_edges_take_the_nearer_class_and_are_not_unmatched(tmp_path: Path) -> None:
    """Issue 11: blends such as (64, 0, 0) between black and red were counted as unmatched (3 % here)."""
    mask, truth = antialiased_mask()
    palette = EDGE_PALETTE
    assert (mask[:, 31] == (67, 0, 1)).all()  # 64 from black: farther than the tolerance 60 from every class
    labels, unmatched = match_colors(mask, palette, tolerance=60)
    assert unmatched == 0
    np.testing.assert_array_equal(labels, truth)
    path = tmp_path / "edges.png"
    cv2.imwrite(str(path), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
    labels, unmatched = read_labels(path, MaskOptions(palette))
    assert unmatched == 0 and (labels == truth).all()
    assert read_foreign(path, MaskOptions(palette)) == []
    check_unmatched(path, unmatched, labels.size, 60, 0.01)  # passes with the default dataset.max_unmatched


def test_foreign_colour_is_named_with_its_count_and_the_setting(tmp_path: Path) -> None:
    mask, _ = antialiased_mask()
    mask[10:20, 40:60] = (255, 0, 255)  # magenta: no class and no blend of two (200 pixels)
    mask[60:70, 70:100] = (255, 0, 255)  # 300 more: 5 % in all
    palette = EDGE_PALETTE
    path = tmp_path / "foreign.png"
    cv2.imwrite(str(path), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
    opts = MaskOptions(palette)
    labels, unmatched = read_labels(path, opts)
    assert unmatched == 500
    assert read_foreign(path, opts) == [((255, 0, 255), 500)]
    with pytest.raises(FlexsegError) as info:
        check_unmatched(path, unmatched, labels.size, 60, 0.01, foreign=lambda: read_foreign(path, opts))
    message = str(info.value)
    assert "foreign.png" in message and "(255, 0, 255) x 500" in message and "500 of 10,000 pixels" in message
    assert "dataset.max_unmatched=0.01" in message and "dataset.color_tolerance=60" in message
    assert "\n" not in message  # one line: the CLI prints the first line of an error raised in tf.data


def test_foreign_indices_of_an_index_mask() -> None:
    values = np.array([[0, 1, 7], [7, 9, 2]], np.uint8)
    opts = MaskOptions(build_palette(CLASSES), mask_format="index")
    assert foreign_values(values, opts) == [((7,), 2), ((9,), 1)]
    assert format_foreign(foreign_values(values, opts)) == "index 7 x 2, index 9 x 1"


def test_grayscale_mask_decodes_for_black_white_classes() -> None:
    palette = build_palette([ClassConfig("bg", [0, 0, 0]), ClassConfig("tumor", [255, 255, 255])])
    gray = np.array([[0, 30, 200, 255]], np.uint8)
    np.testing.assert_array_equal(match_colors(gray, palette)[0], [[0, 0, 1, 1]])
