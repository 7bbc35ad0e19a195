"""Sliding-window (tiled) prediction of an image of any size with a per-tile predictor.

Pure numpy: the predictor is passed in as a callable, so this module imports neither TensorFlow
nor Hydra. The tiling maths follow nnU-Net v2 (evenly spaced windows, a cached Gaussian
importance map); the public entry point follows MONAI's ``sliding_window_inference``.

Memory is bounded by the image width, not its area: tiles are predicted in raster order and
blended into an accumulator one tile high; as soon as a tile row is complete, the rows no later
tile can touch are normalised and handed out (``iter_tiled_bands``). The image itself may be read
lazily: anything with ``.shape == (H, W, C)`` whose row slices ``image[a:b]`` return arrays (a
numpy array, or a TIFF read strip by strip) is read one band of tile rows at a time.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterator, Optional

import numpy as np

BLEND_MODES = ("gaussian", "constant")
# Flip test-time augmentation in 2D: none, vertical, horizontal, both (axes of an (N, H, W, C) batch).
FLIPS: tuple[tuple[int, ...], ...] = ((), (1,), (2,), (1, 2))

PredictFn = Callable[[np.ndarray], np.ndarray]  # (N, h, w, C) -> (N, h, w, K)


def resolve_overlap(overlap: float, tile_size: int) -> int:
    """Overlap in pixels from a pixel count (>= 1) or a fraction of the tile (0 < overlap < 1).

    Args:
        overlap: Pixels (a whole number, 0 allowed) or, when below 1, a fraction of ``tile_size``.
        tile_size: Tile edge in pixels.

    Returns:
        Pixels shared by neighbouring tiles, 0 <= result < ``tile_size``.
    """
    if 0 < overlap < 1:
        pixels = int(round(overlap * tile_size))
    elif overlap == int(overlap):
        pixels = int(overlap)
    else:
        raise ValueError(
            f"overlap must be whole pixels or a fraction < 1 of the tile ({tile_size}), got {overlap}."
        )
    if not 0 <= pixels < tile_size:
        raise ValueError(f"overlap must be >= 0 and < tile ({tile_size}), got {overlap}.")
    return pixels


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


def count_tiles(height: int, width: int, tile_size: int, overlap: float) -> int:
    """Number of tiles ``predict_tiled`` cuts from an image of ``height`` x ``width`` pixels."""
    pixels = resolve_overlap(overlap, tile_size)
    rows = compute_tile_starts(max(height, tile_size), tile_size, pixels)
    cols = compute_tile_starts(max(width, tile_size), tile_size, pixels)
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


def _checked(probs: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The predictor's output as float32 (N, h, w, K), or a ValueError naming the bad shape."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 4 or probs.shape[:3] != shape[:3]:
        raise ValueError(f"predictor must return shape {shape[:3]} + (K,), got {probs.shape}.")
    return probs


def predict_with_flips(batch: np.ndarray, predictor: PredictFn) -> np.ndarray:
    """Flip test-time augmentation: the mean of the predictions of the 4 flips of ``batch``.

    Args:
        batch: (N, h, w, C) float32 tiles.
        predictor: Maps (N, h, w, C) to (N, h, w, K) probabilities.

    Returns:
        (N, h, w, K) float32, each flipped prediction flipped back before averaging.
    """
    total: Optional[np.ndarray] = None
    for axes in FLIPS:
        tiles = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
        probs = _checked(predictor(tiles), batch.shape)
        probs = np.flip(probs, axes) if axes else probs
        total = probs.copy() if total is None else np.add(total, probs, out=total)
    assert total is not None
    return total / np.float32(len(FLIPS))


def _iter_tiles(
    image: Any, starts_y: list[int], starts_x: list[int], tile: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(tile row index, x, (tile, tile, C) float32 view) in raster order, reading one band per row."""
    for row, y in enumerate(starts_y):
        band = _pad_to_tile(np.asarray(image[y : y + tile], dtype=np.float32), tile)
        for x in starts_x:
            yield row, x, band[:, x : x + tile]


def _iter_batches(tiles: Iterator[tuple[int, int, np.ndarray]], size: int) -> Iterator[list]:
    batch: list[tuple[int, int, np.ndarray]] = []
    for item in tiles:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_tiled_bands(
    image: Any,
    predictor: PredictFn,
    tile_size: int,
    overlap: float,
    batch_size: int = 4,
    blend: str = "gaussian",
    progress: Optional[Callable[[int], None]] = None,
    *,
    tta: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Blended sliding-window probabilities, handed out top to bottom in finished bands of rows.

    Tiles are predicted in raster order, ``batch_size`` at a time (a batch may span tile rows),
    and blended into a (tile_size, W, K) accumulator. Once every tile of tile row i is in, rows
    ``[y_i, y_{i+1})`` are final (no later tile reaches above ``y_{i+1}``) and are yielded; so
    memory is O(tile_size x W x K), whatever the height.

    Args:
        image: (H, W, C) array or lazily read image (``.shape`` and row slicing ``image[a:b]``);
            each band is cast to float32, nothing else. Any H, W >= 1: an image smaller than a
            tile is padded (reflect where it fits, else edge) and the output cropped back.
        predictor: Maps a (N, tile_size, tile_size, C) float32 batch to (N, tile_size,
            tile_size, K) probabilities, N <= ``batch_size``.
        tile_size: Tile edge in pixels.
        overlap: Minimum pixels shared by neighbouring tiles, or a fraction (< 1) of the tile.
        batch_size: Tiles per predictor call; the last call may get fewer.
        blend: One of ``BLEND_MODES``; how overlapping predictions are weighted.
        progress: Called after each batch with the number of tiles it held.
        tta: Average the predictions of the 4 flips of every tile (4 predictor calls per batch).

    Yields:
        (first row, (rows, W, K) float32 probabilities): consecutive bands covering [0, H).
    """
    shape = tuple(image.shape)
    if len(shape) != 3:
        raise ValueError(f"image must have shape (H, W, C), got {shape}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    height, width = int(shape[0]), int(shape[1])
    pixels = resolve_overlap(overlap, tile_size)
    weights = compute_blend_weights(tile_size, blend)
    starts_y = compute_tile_starts(max(height, tile_size), tile_size, pixels)
    starts_x = compute_tile_starts(max(width, tile_size), tile_size, pixels)
    starts_y.append(starts_y[-1] + tile_size)  # the end of the last band
    scores: Optional[np.ndarray] = None
    weighted: Optional[np.ndarray] = None  # scratch: one tile's probabilities x weights
    weight_sum = np.zeros((tile_size, max(width, tile_size)), dtype=np.float32)
    row = 0  # the tile row the accumulator is anchored at

    def finish_row() -> tuple[int, np.ndarray]:
        """Normalise the rows of tile row ``row`` that no later tile touches; shift them out."""
        assert scores is not None
        top, n = starts_y[row], starts_y[row + 1] - starts_y[row]
        band = scores[:n] / weight_sum[:n, :, None]
        scores[:-n], weight_sum[:-n] = scores[n:], weight_sum[n:]
        scores[-n:], weight_sum[-n:] = 0, 0
        return top, band[: min(n, height - top), :width]

    tiles = _iter_tiles(image, starts_y[:-1], starts_x, tile_size)
    for batch_items in _iter_batches(tiles, batch_size):
        batch = np.stack([tile for _, _, tile in batch_items])
        probs = predict_with_flips(batch, predictor) if tta else _checked(predictor(batch), batch.shape)
        if scores is None or weighted is None:
            scores = np.zeros(weight_sum.shape + probs.shape[3:], dtype=np.float32)
            weighted = np.empty(probs.shape[1:], dtype=np.float32)
        for (tile_row, x, _), tile_probs in zip(batch_items, probs):
            while row < tile_row:
                yield finish_row()
                row += 1
            np.multiply(tile_probs, weights[..., None], out=weighted)
            scores[:, x : x + tile_size] += weighted
            weight_sum[:, x : x + tile_size] += weights
        if progress is not None:
            progress(len(batch_items))
    yield finish_row()


def predict_tiled(
    image: Any,
    predictor: PredictFn,
    tile_size: int,
    overlap: float,
    batch_size: int = 4,
    blend: str = "gaussian",
    progress: Optional[Callable[[int], None]] = None,
    *,
    tta: bool = False,
) -> np.ndarray:
    """Predict class probabilities for an image of any size by blending overlapping tiles.

    The whole-output form of ``iter_tiled_bands`` (same arguments): tiles are cut at full
    resolution, an image smaller than a tile is padded and the output cropped back.

    Args:
        image: (H, W, C) image (array or lazily read, see ``iter_tiled_bands``); cast to float32.
        predictor: Maps a (N, tile_size, tile_size, C) float32 batch to (N, tile_size,
            tile_size, K) probabilities, N <= ``batch_size``.
        tile_size: Tile edge in pixels.
        overlap: Minimum pixels shared by neighbouring tiles, 0 <= overlap < tile_size, or a
            fraction (< 1) of the tile.
        batch_size: Tiles per predictor call; the last call may get fewer.
        blend: One of ``BLEND_MODES``; how overlapping predictions are weighted.
        progress: Called after each batch with the number of tiles it held.
        tta: Average over the 4 flips of every tile.

    Returns:
        (H, W, K) float32 probabilities, the weighted mean of all tiles covering each pixel.
    """
    out: Optional[np.ndarray] = None
    for top, band in iter_tiled_bands(
        image, predictor, tile_size, overlap, batch_size, blend, progress, tta=tta
    ):
        if out is None:
            out = np.empty((image.shape[0],) + band.shape[1:], dtype=np.float32)
        out[top : top + len(band)] = band
    assert out is not None  # at least one band always exists
    return out
