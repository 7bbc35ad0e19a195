"""Colour masks <-> class indices: nearest class colour, never exact match only.

Real masks carry JPEG noise and anti-aliased edges that blend two class colours, so a colour near a
class colour takes that class, and one near the segment between two class colours takes the nearer
of the two; only other colours are foreign (`dataset.max_unmatched`). Grayscale masks decode as RGB
gray, which maps black/white classes correctly.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from flexseg.config.schemas import ClassConfig
from flexseg.errors import FlexsegError


def build_palette(classes: Sequence[ClassConfig]) -> np.ndarray:
    """Class colours in class-index order.

    Returns:
        (K, 3) uint8 array; row 0 is the background colour.
    """
    return np.asarray([list(c.color) for c in classes], dtype=np.uint8)


def _classify(rgb: np.ndarray, palette: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Class of each distinct colour, and which colours are foreign (match no class).

    A colour within `tolerance` of a class colour takes the nearest class. Else, a colour within
    `tolerance` of the segment between two class colours (projection inside the segment) is an
    anti-aliased edge: it takes the nearer end of the nearest such segment. Anything else is foreign
    and takes the nearest class colour.

    Args:
        rgb: (N, 3) distinct colours (any integer type).
        palette: (K, 3) class colours.
        tolerance: RGB (Euclidean) distance.

    Returns:
        ((N,) uint8 class indices, (N,) bool foreign).
    """
    pal = palette.astype(np.float64)
    col = rgb.astype(np.float64)
    dist = ((col[:, None, :] - pal[None]) ** 2).sum(-1)  # (N, K)
    labels = dist.argmin(-1).astype(np.uint8)
    foreign = dist.min(-1) > tolerance**2
    if not foreign.any() or not np.isfinite(tolerance):
        return labels, foreign
    rest = np.flatnonzero(foreign)
    far = col[rest]
    best = np.full(len(rest), np.inf)  # squared distance to the nearest segment holding the colour
    nearer = np.zeros(len(rest), np.uint8)
    for a, b in itertools.combinations(range(len(pal)), 2):  # K(K-1)/2 segments, vectorised over colours
        step = pal[b] - pal[a]
        length2 = float(step @ step)
        if length2 == 0:
            continue
        t = ((far - pal[a]) @ step) / length2  # projection parameter: 0 at class a, 1 at class b
        off = ((far - pal[a] - t[:, None] * step) ** 2).sum(-1)
        hit = (t >= 0) & (t <= 1) & (off <= tolerance**2) & (off < best)
        best[hit] = off[hit]
        nearer[hit] = np.where(t[hit] <= 0.5, a, b)
    blend = np.isfinite(best)
    labels[rest[blend]] = nearer[blend]
    foreign[rest[blend]] = False
    return labels, foreign


def match_colors(mask_rgb: np.ndarray, palette: np.ndarray, tolerance: float = np.inf) -> tuple[np.ndarray, int]:
    """Class index of every pixel, and how many pixels are foreign (match no class).

    Exact class colours (the common case) are matched by a sorted lookup. The other colours are
    classified once per distinct colour (``_classify``): near a class colour -> that class; near the
    segment between two class colours (an anti-aliased edge, e.g. (64, 0, 0) between black and red)
    -> the nearer of the two; else foreign, counted, and given the nearest class colour.

    Args:
        mask_rgb: (H, W, 3) or (H, W) uint8 mask.
        palette: (K, 3) class colours.
        tolerance: RGB (Euclidean) distance to a class colour or to a blend of two
            (`dataset.color_tolerance`); farther pixels are foreign.

    Returns:
        ((H, W) uint8 class indices, count of foreign pixels).
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
    classes, foreign = _classify(unpack_rgb(colors), palette, tolerance)
    labels[inexact] = classes[inverse]
    unmatched = int(np.bincount(inverse, minlength=len(colors))[foreign].sum()) if foreign.any() else 0
    return labels, unmatched


def foreign_colors(mask_rgb: np.ndarray, palette: np.ndarray, tolerance: float) -> list[tuple[tuple[int, ...], int]]:
    """The colours `match_colors` counts as foreign, with their pixel counts, most frequent first.

    Args:
        mask_rgb: (H, W, 3) or (H, W) uint8 mask (or a band of its rows).
        palette: (K, 3) class colours.
        tolerance: as in `match_colors`.

    Returns:
        [((r, g, b), pixels), ...] sorted by decreasing count.
    """
    if mask_rgb.ndim == 2:
        mask_rgb = np.repeat(mask_rgb[..., None], 3, axis=-1)
    colors, counts = np.unique(pack_rgb(mask_rgb[..., :3]), return_counts=True)
    rgb = unpack_rgb(colors)
    _, foreign = _classify(rgb, palette, tolerance)
    order = np.argsort(-counts[foreign], kind="stable")
    return [(tuple(int(v) for v in rgb[foreign][i]), int(counts[foreign][i])) for i in order]


def foreign_indices(values: np.ndarray, num_classes: int) -> list[tuple[tuple[int, ...], int]]:
    """Index-mask values that are no class index (negative, >= `num_classes`, fractional, NaN) with their
    pixel counts, most frequent first: [((index,), n), ...]."""
    found, counts = np.unique(values[~valid_indices(values, num_classes)], return_counts=True)
    number = lambda v: int(v) if float(v).is_integer() else float(v)  # noqa: E731
    return [((number(found[i]),), int(counts[i])) for i in np.argsort(-counts, kind="stable")]


def valid_indices(values: np.ndarray, num_classes: int) -> np.ndarray:
    """Where index-mask values are class indices: whole numbers in [0, num_classes) (NaN is not)."""
    valid = (values >= 0) & (values < num_classes)
    if values.dtype.kind == "f":
        valid &= values == np.floor(values)
    return valid


def format_foreign(foreign: Sequence[tuple[tuple[int, ...], int]], top: int = 5) -> str:
    """`(255, 0, 255) x 1,234, index 7 x 12` for the `top` most frequent foreign colours or indices."""
    shown = [f"{value if len(value) > 1 else f'index {value[0]}'} x {count:,}" for value, count in foreign[:top]]
    more = f" and {len(foreign) - top} more" if len(foreign) > top else ""
    return ", ".join(shown) + more


def unmatched_message(unmatched: int, total: int, tolerance: float, max_unmatched: float,
                      foreign: Sequence[tuple[tuple[int, ...], int]] = ()) -> str:
    """The one explanation of too many foreign mask pixels (training, eval, tiled and `mode=stats`)."""
    listed = f"; most frequent: {format_foreign(foreign)}" if foreign else ""
    return (
        f"{unmatched:,} of {total:,} pixels ({unmatched / total:.1%}) match no class colour{listed}. Allowed: "
        f"dataset.max_unmatched={max_unmatched:g} of a mask's pixels. (Colours within dataset.color_tolerance="
        f"{tolerance:g} of a class colour, or of a blend of two class colours as on anti-aliased edges, take "
        "that class.) Add the missing class to dataset.classes or correct its colour, or raise "
        "dataset.max_unmatched to give these pixels their nearest class."
    )


def check_unmatched(
    path: object, unmatched: int, total: int, tolerance: float, max_unmatched: float,
    foreign: Callable[[], Sequence[tuple[tuple[int, ...], int]]] | None = None,
) -> None:
    """Stop when more than `max_unmatched` of a mask's pixels are foreign (`dataset.max_unmatched`).

    Args:
        path: The mask file, for the message.
        unmatched: Foreign pixels (see `flexseg.data.readers.decode_mask_array`).
        total: Pixels of the mask.
        tolerance: `dataset.color_tolerance`, for the message.
        max_unmatched: Fraction of pixels allowed to be foreign.
        foreign: Called only when the check fails: the foreign colours (or indices) with their
            pixel counts, most frequent first (`flexseg.data.readers.read_foreign`), to list them.

    Raises:
        FlexsegError: one line naming the file, the top foreign colours and the dataset keys.
    """
    if unmatched > max_unmatched * total:
        listed = foreign() if foreign is not None else ()
        raise FlexsegError(f"'{path}': {unmatched_message(unmatched, total, tolerance, max_unmatched, listed)}")


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


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """(...) int 0xRRGGBB -> (..., 3) int64."""
    packed = packed.astype(np.int64)
    return np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=-1)
