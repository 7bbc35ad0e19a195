"""Image files of `mode=tiled`: lazily read (Big)TIFF input, outputs written band by band.

Readers give (rows, W, 3) uint8 RGB for a range of rows. PNG/JPEG/BMP files are decoded whole
(OpenCV cannot read part of one); TIFFs are decoded only in the strips or tiles holding the rows
asked for (tifffile), so a whole-slide image never sits in memory. Sinks take the output rows top
to bottom: PNG buffers the uint8 image and writes it at the end (temp file + rename); TIFF streams
tiled, zlib-compressed pages (BigTIFF beyond 2 GiB) from a writer thread, holding one tile row.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

import numpy as np
import tifffile

from flexseg.reporting import viz
from flexseg.data.readers import ImageOptions, convert_image
from flexseg.errors import FlexsegError

TIFF_SUFFIXES = (".tif", ".tiff")
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", *TIFF_SUFFIXES)
AUTO_TIFF_PIXELS = 8192 * 8192  # `auto`: TIFF output for TIFF input or images above this size
TIFF_TILE = 256
BIGTIFF_BYTES = 2**31  # uncompressed size above which the classic 4 GiB offsets might not do


class RowReader(Protocol):
    """An RGB image read by ranges of rows."""

    shape: tuple[int, int, int]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as (stop - start, W, 3) uint8 RGB."""

    def close(self) -> None: ...


def list_inputs(folder: Path, key: str) -> dict[str, Path]:
    """Files of ``folder`` with a suffix of ``INPUT_SUFFIXES`` (TIFF included), by stem.

    Raises:
        FlexsegError: naming ``key`` when the folder is missing, or two files share a stem.
    """
    if not folder.is_dir():
        raise FlexsegError(f"{key}: folder '{folder}' does not exist; set {key} to a folder of images.")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in INPUT_SUFFIXES:
            continue
        if path.stem in found:
            raise FlexsegError(
                f"{key}: two files share the stem '{path.stem}': {found[path.stem]} and {path}. "
                "Rename or remove one so each image pairs with at most one mask."
            )
        found[path.stem] = path
    return found


def to_uint8_rgb(pixels: np.ndarray) -> np.ndarray:
    """(rows, W[, S]) uint8/uint16/bool/float-in-[0,1] pixels -> (rows, W, 3) uint8 RGB.

    One sample is gray (repeated), two are gray + alpha, three or more start with RGB.
    """
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)  # as viz.read_rgb
    elif pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype.kind == "f":
        pixels = (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ValueError(f"pixel type {pixels.dtype} is not supported (uint8, uint16, bool, float).")
    if pixels.shape[-1] < 3:
        return np.repeat(pixels[..., :1], 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


class ArrayReader:
    """An (H, W, 3) uint8 RGB image in memory behind the ``RowReader`` interface."""

    def __init__(self, rgb: np.ndarray) -> None:
        self._rgb = rgb
        self.shape = (int(rgb.shape[0]), int(rgb.shape[1]), 3)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return self._rgb[start:stop]

    def close(self) -> None:
        self._rgb = np.empty((0, 0, 3), np.uint8)


class TiffReader:
    """Rows of the first (full resolution) image of a TIFF, decoding only the segments they need.

    Decoded segment rows (strips, or rows of tiles) are kept in a small LRU cache of about
    ``cache_rows`` image rows, so overlapping reads of neighbouring bands decode nothing twice.
    """

    def __init__(self, path: Path, cache_rows: int = 768) -> None:
        self.path = path
        self._tif = tifffile.TiffFile(path)
        try:
            page = self._tif.series[0].pages[0]
            self._page = page.aspage() if hasattr(page, "aspage") else page
            self._layout()
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

    def _decode_chunk_row(self, row: int) -> np.ndarray:
        """Segment row ``row`` (image rows ``[row * chunk, ...)``) as (rows, W, 3) uint8 RGB."""
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
        return to_uint8_rgb(pixels)

    def _chunk_row(self, row: int) -> np.ndarray:
        if row in self._cache:
            self._cache.move_to_end(row)
            return self._cache[row]
        try:
            decoded = self._decode_chunk_row(row)
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
        return ArrayReader(viz.read_rgb(path))
    try:
        return TiffReader(path)
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
        return convert_image(self.reader.read_rows(start, stop), self.options)


def choose_format(output_format: str, path: Path, height: int, width: int) -> str:
    """``png`` or ``tiff`` for ``tiling.output_format`` (``auto``: TIFF for TIFF input or large images)."""
    if output_format != "auto":
        return output_format
    big = height * width > AUTO_TIFF_PIXELS
    return "tiff" if big or path.suffix.lower() in TIFF_SUFFIXES else "png"


class PngSink:
    """Collects uint8 rows top to bottom; writes the PNG (temp file + rename) on ``close``."""

    def __init__(self, path: Path, height: int, width: int) -> None:
        self.path = path
        self._image = np.empty((height, width, 3), np.uint8)
        self._filled = 0

    def write_rows(self, rows: np.ndarray) -> None:
        self._image[self._filled : self._filled + len(rows)] = rows
        self._filled += len(rows)

    def close(self) -> None:
        viz.write_rgb(self.path, self._image)

    def abort(self) -> None:
        self._image = np.empty((0, 0, 3), np.uint8)


_DONE, _ABORT = "done", "abort"


class TiffSink:
    """Streams uint8 rows into a tiled, zlib-compressed (Big)TIFF, written by a background thread.

    Rows arrive in bands of any height; whole tile rows go through a queue of 2 to a thread that
    feeds them to ``tifffile.TiffWriter.write`` tile by tile. The file appears (rename from a
    temp file) only on a successful ``close``.
    """

    def __init__(self, path: Path, height: int, width: int, samples: int = 3, tile: int = TIFF_TILE) -> None:
        self.path, self._tile, self._width = path, tile, width
        self._tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: list[np.ndarray] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: Optional[BaseException] = None
        self._ended = False
        shape = (height, width, samples) if samples > 1 else (height, width)
        self._thread = threading.Thread(target=self._write, args=(shape,), name=f"tiff:{path.name}", daemon=True)
        self._thread.start()

    def _tiles(self) -> Iterator[np.ndarray]:
        while True:
            block = self._queue.get()
            if isinstance(block, str):
                self._ended = True
                if block == _ABORT:
                    raise InterruptedError("aborted")
                return
            for x in range(0, self._width, self._tile):
                yield block[:, x : x + self._tile]

    def _write(self, shape: tuple[int, ...]) -> None:
        try:
            with tifffile.TiffWriter(self._tmp, bigtiff=int(np.prod(shape)) > BIGTIFF_BYTES) as writer:
                writer.write(
                    data=self._tiles(), shape=shape, dtype=np.uint8, tile=(self._tile, self._tile),
                    compression="zlib", compressionargs={"level": 1}, maxworkers=1,
                    photometric="rgb" if len(shape) == 3 and shape[2] == 3 else "minisblack",
                    planarconfig="contig" if len(shape) == 3 else None,
                )
        except BaseException as err:  # re-raised in the producer's thread by write_rows/close
            self._error = err
            while not self._ended:  # keep the producer from blocking on a full queue
                self._ended = isinstance(self._queue.get(), str)

    def _check(self) -> None:
        if self._error is not None:
            raise FlexsegError(f"Cannot write '{self.path}': {self._error}. Check the disk space and folder.")

    def write_rows(self, rows: np.ndarray) -> None:
        """Append (rows, W, samples) uint8 below the rows written so far."""
        self._check()
        self._pending.append(rows[..., 0] if rows.ndim == 3 and rows.shape[-1] == 1 else rows)
        if sum(len(p) for p in self._pending) < self._tile:
            return
        block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        full = len(block) // self._tile * self._tile
        for top in range(0, full, self._tile):
            self._queue.put(np.ascontiguousarray(block[top : top + self._tile]))
        self._pending = [block[full:]] if full < len(block) else []

    def close(self) -> None:
        """Write the last rows, wait for the writer and move the file into place."""
        if self._error is None and self._pending:
            self._queue.put(np.ascontiguousarray(np.concatenate(self._pending)))
        self._queue.put(_DONE)  # also ends a writer that failed and is draining the queue
        self._thread.join()
        if self._error is not None:
            self._tmp.unlink(missing_ok=True)
        self._check()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(_ABORT, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._tmp.unlink(missing_ok=True)
