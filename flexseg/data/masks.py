"""Colour masks <-> class indices: nearest class colour, never exact match only.

Real masks carry anti-aliased edges and JPEG noise, so every pixel takes the class whose colour is
nearest in RGB. Grayscale masks decode as RGB gray, which maps black/white classes correctly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flexseg.config import ClassConfig


def build_palette(classes: Sequence[ClassConfig]) -> np.ndarray:
    """Class colours in class-index order.

    Returns:
        (K, 3) uint8 array; row 0 is the background colour.
    """
    return np.asarray([list(c.color) for c in classes], dtype=np.uint8)


def compute_labels_np(mask_rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Nearest-colour class index of every pixel (numpy twin of `decode_mask`).

    Args:
        mask_rgb: (H, W, 3) or (H, W) uint8 mask.
        palette: (K, 3) class colours.

    Returns:
        (H, W) uint8 (K <= 256) class indices.
    """
    if mask_rgb.ndim == 2:
        mask_rgb = np.repeat(mask_rgb[..., None], 3, axis=-1)
    pix = mask_rgb[..., :3].astype(np.int32)
    dist = ((pix[..., None, :] - palette.astype(np.int32)) ** 2).sum(-1)  # (H, W, K)
    return dist.argmin(-1).astype(np.uint8)


def decode_mask(mask_rgb, palette):  # type: ignore[no-untyped-def]
    """TF graph version: (H, W, 3) uint8 tensor -> (H, W) int32 class indices (nearest colour).

    Args:
        mask_rgb: (H, W, 3) uint8 tensor.
        palette: (K, 3) uint8 array or tensor.
    """
    import tensorflow as tf

    pix = tf.cast(mask_rgb, tf.int32)[:, :, None, :]  # (H, W, 1, 3)
    pal = tf.cast(tf.constant(palette), tf.int32)[None, None]  # (1, 1, K, 3)
    dist = tf.reduce_sum(tf.square(pix - pal), axis=-1)  # (H, W, K)
    return tf.argmin(dist, axis=-1, output_type=tf.int32)
