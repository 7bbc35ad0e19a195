"""Pictures: colour masks, overlays, image | truth | prediction grids, PNG writing (atomic)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from flexseg.errors import FlexsegError


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB colour mask."""
    return palette[labels]


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours over an RGB uint8 image where the class is not background.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) class indices.
        palette: (K, 3) uint8.
    """
    colour = colorize(labels, palette).astype(np.float32)
    out = image.astype(np.float32)
    fg = labels > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return out.round().astype(np.uint8)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] (C = 1 or 3, or more: first 3 shown) -> (H, W, 3) uint8."""
    img = np.clip(image * 255.0, 0, 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img[..., :3]


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


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (8-bit view of 16-bit files).

    Raises:
        FlexsegError: naming the file when it cannot be decoded.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FlexsegError(f"Cannot read image '{path}': not an image file or corrupt. Replace or remove it.")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def write_rgb(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (PNG/JPEG by suffix) via a temp file + rename, so no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise FlexsegError(f"Cannot write '{path}'; check the folder is writable and the suffix is an image type.")
    os.replace(tmp, path)
    return path
