"""Pictures: the one overlay (uint8, used by infer, tiled, eval and the epoch pictures) and colour masks."""

from __future__ import annotations

import numpy as np

from flexseg.reporting import viz

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)


def test_overlay_blends_foreground_within_rounding_and_keeps_background():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (64, 80)).astype(np.uint8)
    out = viz.overlay(image, labels, PALETTE)
    exact = (1 - viz.OVERLAY_ALPHA) * image + viz.OVERLAY_ALPHA * PALETTE[labels].astype(np.float64)
    fg = labels > 0
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.abs(out[fg].astype(np.float64) - exact[fg]).max() <= 0.5 + 1e-6  # rounded to nearest
    np.testing.assert_array_equal(out[~fg], image[~fg])
    np.testing.assert_array_equal(viz.overlay(image, labels, PALETTE, colour=viz.colorize(labels, PALETTE)), out)


def test_colorize_maps_indices_to_palette_colours():
    labels = np.array([[0, 2], [1, 0]], np.uint8)
    np.testing.assert_array_equal(viz.colorize(labels, PALETTE), PALETTE[labels])
