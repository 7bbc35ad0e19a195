"""Colour masks <-> class indices: nearest class colour, never exact match only.

Real masks carry anti-aliased edges and JPEG noise, so every pixel takes the class whose colour is
nearest in RGB. Grayscale masks decode as RGB gray, which maps black/white classes correctly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flexseg.config.schemas import ClassConfig


def build_palette(classes: Sequence[ClassConfig]) -> np.ndarray:
    """Class colours in class-index order.

    Returns:
        (K, 3) uint8 array; row 0 is the background colour.
    """
    return np.asarray([list(c.color) for c in classes], dtype=np.uint8)


def match_colors(mask_rgb: np.ndarray, palette: np.ndarray, tolerance: float = np.inf) -> tuple[np.ndarray, int]:
    """Nearest-colour class index of every pixel, and how many pixels are far from every class.

    Exact class colours (the common case) are matched by a sorted lookup; distances are computed
    only for the other colours, once per distinct colour.

    Args:
        mask_rgb: (H, W, 3) or (H, W) uint8 mask.
        palette: (K, 3) class colours.
        tolerance: RGB (Euclidean) distance beyond which a pixel counts as unmatched.

    Returns:
        ((H, W) uint8 class indices, count of pixels farther than `tolerance` from every class).
    """
    if mask_rgb.ndim == 2:
        mask_rgb = np.repeat(mask_rgb[..., None], 3, axis=-1)
    packed = pack_rgb(mask_rgb[..., :3])
    pal_packed = pack_rgb(palette)
    order = np.argsort(pal_packed)
    pos = np.searchsorted(pal_packed[order], packed).clip(max=len(palette) - 1)
    labels = order[pos].astype(np.uint8)
    inexact = pal_packed[order][pos] != packed
    if not inexact.any():
        return labels, 0
    colors, inverse = np.unique(packed[inexact], return_inverse=True)
    rgb = np.stack([colors >> 16, (colors >> 8) & 255, colors & 255], axis=-1)
    dist = ((rgb[:, None, :] - palette.astype(np.int32)[None]) ** 2).sum(-1)  # (colours, K)
    labels[inexact] = dist.argmin(-1).astype(np.uint8)[inverse]
    far = dist.min(-1) > tolerance**2
    unmatched = int(np.bincount(inverse, minlength=len(colors))[far].sum()) if far.any() else 0
    return labels, unmatched


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 0xRRGGBB."""
    pix = rgb.astype(np.int32)
    return (pix[..., 0] << 16) | (pix[..., 1] << 8) | pix[..., 2]
