"""Cheap per-file checks run before any training or prediction: empty, undecodable, truncated, oversized files.

Only headers and the last bytes are read (PIL opens lazily), so a scan of thousands of files
takes seconds. Full decoding (mask colours) is `mode=stats`'s job and the pipeline's.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """Something wrong with a file, folder or pair, said so that a user can fix it."""

    path: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


BROKEN_LINK = "a symbolic link that leads nowhere (or into a loop of links); fix or remove it."


def is_broken_link(path: Path) -> bool:
    """A symbolic link whose target is missing, or a loop of links."""
    return path.is_symlink() and not path.exists()


def _tail(path: Path, count: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - count))
        return fh.read()


def _truncated(path: Path, fmt: str | None) -> bool:
    """PNG without its IEND chunk, JPEG without its end-of-image marker, TIFF whose first image's
    data runs past the end of the file."""
    if fmt == "PNG":
        return b"IEND" not in _tail(path, 12)
    if fmt == "JPEG":
        return b"\xff\xd9" not in _tail(path, 1024)
    if fmt == "TIFF":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
        except (tifffile.TiffFileError, ValueError, IndexError, OSError):
            return False  # the TIFF reader reports it
        return end > path.stat().st_size
    return False


def inspect_file(path: Path, max_pixels: int) -> tuple[tuple[int, int] | None, Problem | None]:
    """Read the header of an image or `.npz` mask.

    Returns:
        ((height, width) or None, a Problem or None).
    """
    from PIL import Image, UnidentifiedImageError

    p = str(path)
    if is_broken_link(path):
        return None, Problem(p, "broken-link", BROKEN_LINK)
    try:
        if path.stat().st_size == 0:
            return None, Problem(p, "empty-file", "empty file (0 bytes); re-export it or remove it.")
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "mask" not in npz.files:
                    return None, Problem(p, "undecodable", f"no array 'mask' in this .npz (has: {', '.join(npz.files)}).")
                shape = npz["mask"].shape
            if len(shape) not in (2, 3):
                return None, Problem(p, "undecodable", f"its 'mask' array has shape {shape}; a mask is (H, W) class "
                                     "indices or (H, W, C) colours.")
            return (int(shape[0]), int(shape[1])), None
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit applies, below
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    width, height = im.size
                    fmt = im.format
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    except (UnidentifiedImageError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        return None, Problem(p, "undecodable", f"not a readable image ({type(err).__name__}); replace or remove it.")
    if width * height > max_pixels:
        return (height, width), Problem(
            p, "too-large", f"{width}x{height} = {width * height:,} pixels exceeds dataset.max_pixels={max_pixels:,} "
            "(decompression-bomb guard); raise dataset.max_pixels if the image is genuine, or tile it."
        )
    if _truncated(path, fmt):
        cut = "its image data runs past the end of the file" if fmt == "TIFF" else "no end marker"
        return (height, width), Problem(p, "truncated", f"truncated {fmt} file ({cut}); re-export it or remove it.")
    return (height, width), None
