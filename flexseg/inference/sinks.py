"""Output files of `mode=tiled`, written band by band as the rows come.

PNG buffers the uint8 image and writes it at the end (temp file + rename); TIFF streams tiled,
zlib-compressed pages (BigTIFF beyond 2 GiB) from a writer thread, holding one tile row. Either
file appears only on a successful ``close``.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import tifffile

from flexseg import storage
from flexseg.inference.image_io import TIFF_SUFFIXES
from flexseg.reporting import viz

AUTO_TIFF_PIXELS = 8192 * 8192  # `auto`: TIFF output for TIFF input or images above this size
TIFF_TILE = 256
BIGTIFF_BYTES = 2**31  # uncompressed size above which the classic 4 GiB offsets might not do


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
            raise storage.write_error(self.path, self._error)

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
