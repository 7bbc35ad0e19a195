"""Pictures: colour masks, overlays, image | truth | prediction grids, PNG writing (atomic)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from flexseg import storage
from flexseg.data.readers import rgb_pixels, to_uint8
from flexseg.errors import FlexsegError


OVERLAY_ALPHA = 0.45


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB colour mask."""
    return np.take(palette, labels, axis=0)


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = OVERLAY_ALPHA,
            colour: np.ndarray | None = None) -> np.ndarray:
    """Blend class colours over an RGB uint8 image where the class is not background.

    ``(1 - alpha) * image + alpha * colour`` in uint8 (OpenCV, rounded to nearest): it runs once per
    band of a gigapixel image in `mode=tiled`, ~4x faster than in float32.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) class indices.
        palette: (K, 3) uint8.
        alpha: Weight of the class colour.
        colour: ``colorize(labels, palette)`` when the caller has it already.

    Returns:
        (H, W, 3) uint8 RGB; background pixels (class 0) are the image's own.
    """
    colour = colorize(labels, palette) if colour is None else colour
    colour = np.ascontiguousarray(colour, dtype=np.uint8)
    blended = cv2.addWeighted(np.ascontiguousarray(image, dtype=np.uint8), 1 - alpha, colour, alpha, 0)
    out = image.copy()
    np.copyto(out, blended, where=(labels > 0)[..., None])
    return out


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float model input in [0, 1] (C = 1 or 3, or more: first 3 shown) -> (H, W, 3) uint8."""
    return to_uint8(rgb_pixels(image, scale=1.0))


def build_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], pad: int = 4) -> np.ndarray:
    """Tile equally sized RGB uint8 panels into a grid with a title bar over each column.

    Args:
        rows: rows of (H, W, 3) uint8 panels, all the same size.
        titles: one title per column.
    """
    h, w = rows[0][0].shape[:2]
    bar = 18
    ncol = len(rows[0])
    grid = np.full((bar + len(rows) * (h + pad), ncol * (w + pad), 3), 255, np.uint8)
    for c, title in enumerate(titles):
        cv2.putText(grid, title, (c * (w + pad) + 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            y, x = bar + r * (h + pad), c * (w + pad)
            grid[y : y + h, x : x + w] = panel
    return grid


def write_rgb(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (PNG/JPEG by suffix) via a temp file + rename, so no half-written file.

    Encoded in memory first, so a full disk is an `OSError` of the write (`flexseg.storage.write_error`:
    the path and the free space), not an encoder's silent failure.
    """
    try:
        ok, data = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise FlexsegError(f"Cannot write '{path}': '{path.suffix}' is not an image type OpenCV can encode.")
    return storage.write_bytes(path, data.tobytes())
