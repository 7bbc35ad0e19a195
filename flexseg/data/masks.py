"""Colour masks <-> class indices: nearest class colour, never exact match only.

Real masks carry anti-aliased edges and JPEG noise, so every pixel takes the class whose colour is
nearest in RGB. Grayscale masks decode as RGB gray, which maps black/white classes correctly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flexseg.config.schemas import ClassConfig
from flexseg.errors import FlexsegError


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


def check_unmatched(path: object, unmatched: int, total: int, tolerance: float, max_unmatched: float) -> None:
    """Stop when more than `max_unmatched` of a mask's pixels match no class (`dataset.max_unmatched`).

    Args:
        path: The mask file, for the message.
        unmatched: Pixels that match no class (see `flexseg.data.readers.decode_mask_array`).
        total: Pixels of the mask.
        tolerance: `dataset.color_tolerance`, for the message.
        max_unmatched: Fraction of pixels allowed to match no class.

    Raises:
        FlexsegError: naming the file, the counts and the two dataset keys.
    """
    if unmatched > max_unmatched * total:
        raise FlexsegError(
            f"'{path}': {unmatched:,} of {total:,} pixels ({unmatched / total:.1%}) are farther "
            f"than dataset.color_tolerance={tolerance:g} from every class colour (allowed: "
            f"dataset.max_unmatched={max_unmatched:g}). Check the colours in dataset.classes "
            "(`flexseg mode=stats` lists the mask colours), or raise the tolerance."
        )


def check_palette_indices(path: object, indices: np.ndarray, colours: np.ndarray, palette: np.ndarray) -> None:
    """Stop when a palette mask paints a class index in another class's colour.

    Palette PNG masks are read as class indices (index i = class i) whatever `dataset.mask_format`
    says: as colours, the usual palette masks (a gray ramp, or indices 0..K-1 of any palette) would
    all read as near-black background. When the file's own palette gives a used index i exactly the
    colour of class j != i, its indices and its colours disagree, and neither reading can be trusted.

    Args:
        path: The mask file, for the message.
        indices: (H, W) the stored palette indices.
        colours: (N, 3) uint8 the file's palette.
        palette: (K, 3) uint8 class colours (`dataset.classes`).

    Raises:
        FlexsegError: naming the file, the index and the class whose colour it has.
    """
    for i in range(min(len(palette), len(colours))):
        same = np.flatnonzero((palette == colours[i]).all(-1))
        if same.size and i not in same and np.any(indices == i):
            raise FlexsegError(
                f"'{path}': this palette PNG paints index {i} in {tuple(int(v) for v in colours[i])}, the colour "
                f"of class {int(same[0])} in dataset.classes, but palette masks are read as class indices "
                f"(index {i} = class {i}). List dataset.classes in the palette's index order, or set "
                "dataset.mask_format=index to take the indices as they are."
            )


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 0xRRGGBB."""
    pix = rgb.astype(np.int32)
    return (pix[..., 0] << 16) | (pix[..., 1] << 8) | pix[..., 2]
