"""Image files read lazily for inference: (Big)TIFFs by rows, other formats decoded whole.

Readers give a range of rows as (rows, W, 3) RGB: ``read_pixels`` in the file's precision for the
model (``flexseg.data.readers.rgb_pixels``, the conversion training uses: uint8, uint16, or float in
[0, 1] by the float rule), ``read_rows`` in uint8 for pictures. PNG/JPEG/BMP files are decoded whole
(OpenCV cannot read part of one, `read_rgb`); TIFFs are decoded only in the strips or tiles holding
the rows asked for (tifffile), so a whole-slide image never sits in memory. The output files are
written by `flexseg.inference.sinks`.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile

from flexseg.data.readers import ImageOptions, convert_image, float_scale, read_pixels, rgb_pixels, to_uint8
from flexseg.errors import FlexsegError

TIFF_SUFFIXES = (".tif", ".tiff")


class RowReader(Protocol):
    """An RGB image read by ranges of rows."""

    shape: tuple[int, int, int]

    def read_pixels(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as (stop - start, W, 3) RGB, uint8 / uint16 / float32 in [0, 1]."""

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as (stop - start, W, 3) uint8 RGB."""

    def close(self) -> None: ...


def read_rgb(path: Path) -> np.ndarray:
    """An image file decoded whole as (H, W, 3) uint8 RGB, for pictures (``read_pixels`` -> ``to_uint8``).

    Raises:
        FlexsegError: naming the file when it cannot be decoded.
    """
    return to_uint8(read_pixels(path))


class ArrayReader:
    """An (H, W, 3) RGB image in memory (as ``readers.rgb_pixels`` gives it) behind ``RowReader``."""

    def __init__(self, rgb: np.ndarray) -> None:
        self._rgb = rgb
        self.shape = (int(rgb.shape[0]), int(rgb.shape[1]), 3)

    def read_pixels(self, start: int, stop: int) -> np.ndarray:
        return self._rgb[start:stop]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return to_uint8(self._rgb[start:stop])

    def close(self) -> None:
        self._rgb = np.empty((0, 0, 3), np.uint8)


class TiffReader:
    """Rows of the first (full resolution) image of a TIFF, decoding only the segments they need.

    Decoded segment rows (strips, or rows of tiles) are kept in a small LRU cache of about
    ``cache_rows`` image rows, so overlapping reads of neighbouring bands decode nothing twice.
    With ``raw``, rows come as stored ((rows, W, S) samples of the file's type, palette colours
    applied), as masks are decoded; else as ``rgb_pixels`` makes them. Float samples are scaled by
    ``float_scale`` of the whole image, found by one streaming pass over its rows when the file is
    opened (nothing kept), so every band is scaled as training scales the whole image.
    """

    def __init__(self, path: Path, cache_rows: int = 768, raw: bool = False) -> None:
        self.path, self._raw = path, raw
        self._tif = tifffile.TiffFile(path)
        try:
            page = self._tif.series[0].pages[0]
            self._page = page.aspage() if hasattr(page, "aspage") else page
            self._layout()
            self._scale = 1.0 if raw else self._image_scale()
        except Exception:
            self._tif.close()
            raise
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_size = max(2, -(-cache_rows // self._chunk))
        self._lock = threading.Lock()

    def _layout(self) -> None:
        page = self._page
        if page.imagedepth != 1 or page.dtype is None:
            raise ValueError(f"volumetric or unsupported TIFF page ({page.shape}, {page.dtype})")
        height, width = int(page.imagelength), int(page.imagewidth)
        self.shape = (height, width, 3)
        self._planes = int(page.samplesperpixel) if page.planarconfig == 2 else 1
        if page.is_tiled:
            self._chunk, self._cols = int(page.tilelength), -(-width // int(page.tilewidth))
        else:
            self._chunk, self._cols = min(int(page.rowsperstrip) or height, height), 1
        self._rows = -(-height // self._chunk)
        if len(page.dataoffsets) != self._planes * self._rows * self._cols:
            raise ValueError(f"unexpected segment count {len(page.dataoffsets)}")

    def _image_scale(self) -> float:
        """``float_scale`` of the whole image (1 for 8/16-bit and palette pages, nothing to read)."""
        if self._page.dtype in (np.uint8, np.uint16, np.bool_):
            return 1.0
        return max(float_scale(self._decode_chunk_row(row)) for row in range(self._rows))

    def _decode_chunk_row(self, row: int) -> np.ndarray:
        """Segment row ``row`` (image rows ``[row * chunk, ...)``) as stored (rows, W, S) samples."""
        page = self._page
        top = row * self._chunk
        rows = min(self._chunk, self.shape[0] - top)
        width, samples = self.shape[1], int(page.samplesperpixel)
        pixels = np.zeros((rows, width, samples), dtype=page.dtype)
        indices = [(p * self._rows + row) * self._cols + c for p in range(self._planes) for c in range(self._cols)]
        offsets = [page.dataoffsets[i] for i in indices]
        counts = [page.databytecounts[i] for i in indices]
        fh = self._tif.filehandle
        for data, index in fh.read_segments(offsets, counts, indices=indices, sort=True):
            segment, (plane, _, y, x, _), _ = page.decode(
                data, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader, _fullsize=page.is_tiled
            )
            if segment is None:
                continue
            block = segment[0, : rows, : width - x]
            channels = slice(plane, plane + 1) if self._planes > 1 else slice(None)
            pixels[:, x : x + block.shape[1], channels] = block
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            pixels = page.colormap.T[pixels[..., 0]]  # class/colour indices -> (rows, W, 3) RGB
        return pixels

    def _chunk_row(self, row: int) -> np.ndarray:
        if row in self._cache:
            self._cache.move_to_end(row)
            return self._cache[row]
        try:
            decoded = self._decode_chunk_row(row)
            decoded = decoded if self._raw else rgb_pixels(decoded, self._scale)
        except (ValueError, KeyError, NotImplementedError, tifffile.TiffFileError) as err:
            raise FlexsegError(
                f"Cannot decode the TIFF '{self.path}': {err}. JPEG/JPEG2000/LZW-compressed TIFFs need "
                "`pip install imagecodecs`; or convert the file to an uncompressed or zlib TIFF."
            ) from err
        self._cache[row] = decoded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return decoded

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        pixels = self.read_pixels(start, stop)
        return pixels if self._raw else to_uint8(pixels)

    def read_pixels(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, 0), min(stop, self.shape[0])
        first, last = start // self._chunk, -(-stop // self._chunk)
        with self._lock:  # the model's reads and the overlay's come from two threads
            parts = [self._chunk_row(r) for r in range(first, max(last, first + 1))]
        block = parts[0] if len(parts) == 1 else np.concatenate(parts)
        offset = start - first * self._chunk
        return block[offset : offset + stop - start]

    def close(self) -> None:
        self._cache.clear()
        self._tif.close()


def open_image(path: Path) -> RowReader:
    """A ``RowReader`` for an image file: TIFF lazily, other formats decoded whole.

    Raises:
        FlexsegError: naming the file when it cannot be read.
    """
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return ArrayReader(read_pixels(path))
    return open_tiff(path)


def open_tiff(path: Path, raw: bool = False) -> TiffReader:
    """A ``TiffReader`` (``raw``: samples as stored), or a FlexsegError naming the file."""
    try:
        return TiffReader(path, raw=raw)
    except (ValueError, tifffile.TiffFileError, IndexError, OSError) as err:
        raise FlexsegError(
            f"Cannot read the TIFF '{path}': {err}. Give a 2-D gray/RGB(A) TIFF (8/16-bit), or convert it."
        ) from err


class ModelInput:
    """(H, W, channels) float32 model-input view of a ``RowReader``; row slices read lazily.

    Each band gets the dataset's image options (channel order, colour converter, gamma) exactly as
    training images do (`flexseg.data.readers.convert_image`).
    """

    def __init__(self, reader: RowReader, options: ImageOptions) -> None:
        self.reader, self.options = reader, options
        self.shape = (reader.shape[0], reader.shape[1], options.channels)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        return convert_image(self.reader.read_pixels(start, stop), self.options)
