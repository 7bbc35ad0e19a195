"""Reading one mask file into (H, W) class indices: every mask kind the reference datasets use.

RGB colours by nearest class colour or blend of two (`flexseg.data.masks`), gray by threshold, index
PNGs (palette PNGs in every `mask_format`, or plain values) and `.npz` arrays (key `mask`). Shared
by training, eval, stats and tiled scoring, so every mode decodes a mask the same way.
"""

from __future__ import annotations

import dataclasses
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from flexseg.config.choices import MaskFormat
from flexseg.data.masks import check_palette_indices, foreign_colors, foreign_indices, match_colors, valid_indices
from flexseg.data.readers import MaskOptions, decode_file, to_uint8
from flexseg.errors import FlexsegError


def _open_mask(path: Path | str, opts: MaskOptions) -> tuple[np.ndarray, MaskOptions, bool]:
    """A mask file's raw pixels, the options to decode them with, and whether they are class indices
    already (palette PNG / 2-D npz). Palette PNGs are read as indices (see `check_palette_indices`)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arr = npz["mask"]
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise FlexsegError(f"Cannot read mask '{path}': an .npz mask needs an array under key 'mask' ({err}).") from err
        if arr.ndim not in (2, 3):
            raise FlexsegError(f"Cannot read mask '{path}': its 'mask' array has shape {arr.shape}; a mask is (H, W) "
                               "class indices or (H, W, C) colours.")
        return arr, opts, arr.ndim == 2
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode == "P":  # palette PNG: the stored values are the class indices
                    arr, colours = np.asarray(im), np.asarray(im.getpalette() or [], np.uint8).reshape(-1, 3)
                    if opts.mask_format != MaskFormat.index:
                        check_palette_indices(path, arr, colours, opts.palette)
                    return arr, dataclasses.replace(opts, mask_format=MaskFormat.index), True
        except (OSError, ValueError):
            pass  # decode_file reports it
    img = decode_file(path)
    return (img[..., 2::-1] if img.ndim == 3 else img), opts, False  # OpenCV's BGR(A) -> RGB


def _format(opts: MaskOptions, is_index: bool) -> MaskFormat:
    """`mask_format` with auto resolved: index for palette PNGs and 2-D npz, else rgb."""
    auto = MaskFormat.index if is_index else MaskFormat.rgb
    return auto if opts.mask_format == MaskFormat.auto else opts.mask_format


def decode_mask_array(arr: np.ndarray, opts: MaskOptions, is_index: bool = False) -> tuple[np.ndarray, int]:
    """Mask pixels (a whole mask or a band of rows) -> class indices.

    Args:
        arr: (H, W) or (H, W, 3) RGB mask pixels, uint8/uint16 (or class indices when `is_index`).
        opts: mask options.
        is_index: the pixels are class indices already (palette PNG, 2-D npz).

    Returns:
        ((H, W) uint8 class indices, number of pixels that match no class: foreign colours (see
        `flexseg.data.masks.match_colors`), or an index >= the class count).
    """
    fmt = _format(opts, is_index)
    if fmt == MaskFormat.index:
        values = arr if arr.ndim == 2 else arr[..., 0]
        valid = valid_indices(values, opts.num_classes)  # negative, too large, fractional: no class
        return np.where(valid, values, 0).astype(np.uint8), int(values.size - np.count_nonzero(valid))
    if arr.dtype == np.uint16:
        arr = to_uint8(arr)
    if fmt == MaskFormat.gray and opts.binarize:
        gray = arr if arr.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(arr[..., :3], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        if opts.blur > 0:
            k = opts.blur | 1  # odd kernel
            gray = cv2.GaussianBlur(gray, (k, k), 0)
        return (gray >= opts.threshold).astype(np.uint8), 0
    return match_colors(arr, opts.palette, opts.color_tolerance)  # rgb, or gray without binarize


def foreign_values(arr: np.ndarray, opts: MaskOptions, is_index: bool = False) -> list[tuple[tuple[int, ...], int]]:
    """The values `decode_mask_array` counts as unmatched, with pixel counts, most frequent first:
    [((r, g, b), n), ...] for colour masks, [((index,), n), ...] for index masks."""
    fmt = _format(opts, is_index)
    if fmt == MaskFormat.index:
        return foreign_indices(arr if arr.ndim == 2 else arr[..., 0], opts.num_classes)
    if fmt == MaskFormat.gray and opts.binarize:
        return []
    return foreign_colors(to_uint8(arr) if arr.dtype == np.uint16 else arr, opts.palette, opts.color_tolerance)


def read_labels(path: Path | str, opts: MaskOptions, size: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """Read a mask file as class indices, resized with nearest neighbour only.

    Palette PNGs are read as class indices in every `mask_format` (see `check_palette_indices`).

    Returns:
        ((H, W) uint8 class indices, number of unmatched pixels; see `decode_mask_array`).

    Raises:
        FlexsegError: naming the file when it cannot be read, or its palette contradicts its indices.
    """
    labels, unmatched = decode_mask_array(*_open_mask(path, opts))
    if size is not None and labels.shape != tuple(size):
        labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return labels, unmatched


def read_foreign(path: Path | str, opts: MaskOptions) -> list[tuple[tuple[int, ...], int]]:
    """The unmatched values of a mask file as `read_labels` decodes it (see `foreign_values`)."""
    return foreign_values(*_open_mask(path, opts))
