"""Sliding-window (tiled) prediction of one large image with a per-tile predictor.

Pure numpy: the predictor is passed in as a callable, so this module imports neither TensorFlow
nor Hydra. The tiling maths follow nnU-Net v2 (evenly spaced windows, a cached Gaussian
importance map); the public entry point follows MONAI's ``sliding_window_inference``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import numpy as np

BLEND_MODES = ("gaussian", "constant")


def compute_tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of size ``tile`` that cover ``[0, length)``.

    Args:
        length: Extent to cover; must be >= ``tile`` (pad smaller images first).
        tile: Window size in pixels, > 0.
        overlap: Minimum number of pixels shared by neighbouring windows, 0 <= overlap < tile.

    Returns:
        Sorted starts: the first is 0, the last is ``length - tile``, the steps as even as possible.
    """
    if tile <= 0:
        raise ValueError(f"tile must be > 0, got {tile}.")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be >= 0 and < tile ({tile}), got {overlap}.")
    if length < tile:
        raise ValueError(f"length must be >= tile ({tile}), got {length}; pad the image first.")
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    if n == 1:
        return [0]
    step = (length - tile) / (n - 1)
    return [int(round(step * i)) for i in range(n)]


@functools.lru_cache(maxsize=16)
def compute_blend_weights(tile: int, mode: str) -> np.ndarray:
    """Per-pixel weight of a tile's prediction when overlapping tiles are blended.

    Args:
        tile: Tile size in pixels.
        mode: ``"gaussian"`` (nnU-Net importance map, sigma = tile / 8, max 1, no zeros) or
            ``"constant"`` (all ones).

    Returns:
        Read-only float32 array of shape (tile, tile). Cached: do not rely on a fresh copy.
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"blend mode must be one of {list(BLEND_MODES)}, got {mode!r}.")
    if mode == "constant":
        weights = np.ones((tile, tile), dtype=np.float32)
    else:
        sigma = tile / 8
        axis = np.arange(tile, dtype=np.float64) - (tile - 1) / 2
        profile = np.exp(-(axis**2) / (2 * sigma**2))
        weights = np.outer(profile, profile)
        weights = (weights / weights.max()).astype(np.float32)
        # As nnU-Net: never a zero weight, so border and corner pixels are never holes.
        weights[weights == 0] = weights[weights != 0].min()
    weights.flags.writeable = False
    return weights


def count_tiles(height: int, width: int, tile_size: int, overlap: int) -> int:
    """Number of tiles ``predict_tiled`` cuts from an image of ``height`` x ``width`` pixels."""
    rows = compute_tile_starts(max(height, tile_size), tile_size, overlap)
    cols = compute_tile_starts(max(width, tile_size), tile_size, overlap)
    return len(rows) * len(cols)


def _pad_to_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """Pad (H, W, C) at the bottom/right to at least (tile, tile, C); reflect where it fits."""
    pads = [(0, max(tile - image.shape[0], 0)), (0, max(tile - image.shape[1], 0)), (0, 0)]
    for axis, (_, pad) in enumerate(pads[:2]):
        if pad:
            width = [(0, 0)] * 3
            width[axis] = (0, pad)
            mode = "reflect" if pad < image.shape[axis] else "edge"
            image = np.pad(image, width, mode=mode)
    return image


def predict_tiled(
    image: np.ndarray,
    predictor: Callable[[np.ndarray], np.ndarray],
    tile_size: int,
    overlap: int,
    batch_size: int = 4,
    blend: str = "gaussian",
    progress: Optional[Callable[[int], None]] = None,
) -> np.ndarray:
    """Predict class probabilities for an image of any size by blending overlapping tiles.

    Tiles are cut at full resolution; an image smaller than a tile is padded and the output
    cropped back.

    Args:
        image: (H, W, C) image; cast to float32.
        predictor: Maps a (N, tile_size, tile_size, C) float32 batch to (N, tile_size,
            tile_size, K) probabilities, N <= ``batch_size``.
        tile_size: Tile edge in pixels.
        overlap: Minimum pixels shared by neighbouring tiles, 0 <= overlap < tile_size.
        batch_size: Tiles per predictor call; the last call may get fewer.
        blend: One of ``BLEND_MODES``; how overlapping predictions are weighted.
        progress: Called after each batch with the number of tiles it held.

    Returns:
        (H, W, K) float32 probabilities, the weighted mean of all tiles covering each pixel.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W, C), got {image.shape}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    height, width = image.shape[:2]
    padded = _pad_to_tile(image, tile_size)
    origins = [
        (y, x)
        for y in compute_tile_starts(padded.shape[0], tile_size, overlap)
        for x in compute_tile_starts(padded.shape[1], tile_size, overlap)
    ]
    weights = compute_blend_weights(tile_size, blend)
    scores: Optional[np.ndarray] = None
    weight_sum = np.zeros(padded.shape[:2], dtype=np.float32)
    for first in range(0, len(origins), batch_size):
        batch_origins = origins[first : first + batch_size]
        batch = np.stack([padded[y : y + tile_size, x : x + tile_size] for y, x in batch_origins])
        probs = np.asarray(predictor(batch), dtype=np.float32)
        if probs.ndim != 4 or probs.shape[:3] != batch.shape[:3]:
            raise ValueError(
                f"predictor must return shape {batch.shape[:3]} + (K,), got {probs.shape}."
            )
        if scores is None:
            scores = np.zeros(padded.shape[:2] + probs.shape[3:], dtype=np.float32)
        for (y, x), tile_probs in zip(batch_origins, probs):
            scores[y : y + tile_size, x : x + tile_size] += tile_probs * weights[..., None]
            weight_sum[y : y + tile_size, x : x + tile_size] += weights
        if progress is not None:
            progress(len(batch_origins))
    assert scores is not None  # at least one tile always exists
    return (scores / weight_sum[..., None])[:height, :width]
