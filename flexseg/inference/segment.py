"""One image through tiled prediction: bands of probabilities -> labels -> files and scores.

Ties the maths (``sliding_window.iter_tiled_bands``) to the files (``image_io`` and ``sinks``): the
image is read band by band, each finished band becomes class labels, colour-mask / overlay /
probability rows for the sinks and, when a mask is given, confusion counts. Masks are decoded and
checked as training reads them (``flexseg.data.readers``, ``dataset.max_unmatched``). Nothing
image-sized is held for TIFF input, masks and output, so peak memory grows with the image width.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from flexseg.data.masks import check_unmatched
from flexseg.data.readers import ImageOptions, MaskOptions
from flexseg.data.mask_files import decode_mask_array, foreign_values, read_foreign, read_labels
from flexseg.errors import FlexsegError
from flexseg.inference.image_io import TIFF_SUFFIXES, ModelInput, TiffReader, open_image, open_tiff
from flexseg.inference.sinks import PngSink, TiffSink, choose_format
from flexseg.inference.sliding_window import PredictFn, count_tiles, iter_tiled_bands
from flexseg.reporting import viz
from flexseg.scoring import compute_confusion, labels_from_probs

log = logging.getLogger(__name__)

SUFFIXES = {"png": ".png", "tiff": ".tif"}


@dataclass(frozen=True)
class TiledOptions:
    """How to tile (``tiling.*`` keys of the same names)."""

    tile_size: int = 256
    overlap: float = 64
    batch_size: int = 4
    blend: str = "gaussian"
    tta: bool = False
    output_format: str = "auto"
    save_probabilities: bool = False


@dataclass
class TiledResult:
    """What ``segment_file`` wrote and measured for one image."""

    outputs: dict[str, Path]  # masks / overlays / probabilities -> file
    shape: tuple[int, int]
    tiles: int
    confusion: Optional[np.ndarray] = None  # (K, K) counts against the mask, rows truth


class _Truth:
    """The mask of one image as class indices by rows, decoded as training reads masks.

    PNG/JPEG/BMP masks are read whole by ``read_labels`` (palette PNGs as indices), so ``check``
    knows their unmatched pixels at once; TIFF masks are decoded band by band and count their
    unmatched pixels (and which values they are, to name them) as the bands come (``check`` after
    the last band).
    """

    def __init__(self, path: Path, options: MaskOptions, max_unmatched: float) -> None:
        self.path, self.options, self.max_unmatched = path, options, max_unmatched
        self.unmatched = 0
        self._foreign: collections.Counter[tuple[int, ...]] = collections.Counter()
        self._tiff: Optional[TiffReader] = None
        self._labels: Optional[np.ndarray] = None
        if path.suffix.lower() in TIFF_SUFFIXES:
            self._tiff = open_tiff(path, raw=True)
            self.shape = self._tiff.shape[:2]
        else:
            self._labels, self.unmatched = read_labels(path, options)
            self.shape = self._labels.shape[:2]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, W) uint8 class indices of rows ``[start, stop)``, read top to bottom once."""
        if self._labels is not None:
            return self._labels[start:stop]
        assert self._tiff is not None
        raw = self._tiff.read_rows(start, stop)
        labels, unmatched = decode_mask_array(raw, self.options)
        if unmatched:
            self._foreign.update(dict(foreign_values(raw, self.options)))
        self.unmatched += unmatched
        return labels

    def _foreign_values(self) -> list[tuple[tuple[int, ...], int]]:
        return self._foreign.most_common() if self._tiff is not None else read_foreign(self.path, self.options)

    def check(self) -> None:
        """FlexsegError (`dataset.max_unmatched`) when too many pixels matched no class."""
        height, width = self.shape
        check_unmatched(self.path, self.unmatched, height * width, self.options.color_tolerance, self.max_unmatched,
                        foreign=self._foreign_values)

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()


class _Outputs:
    """The sinks of one image, opened at the first band (when K is known)."""

    def __init__(self, out_dir: Path, name: str, fmt: str, shape: tuple[int, int], probabilities: bool) -> None:
        self.out_dir, self.name, self.fmt, self.shape, self.probabilities = out_dir, name, fmt, shape, probabilities
        self.sinks: dict[str, PngSink | TiffSink] = {}

    def path(self, kind: str, fmt: str) -> Path:
        return self.out_dir / kind / f"{self.name}{SUFFIXES[fmt]}"

    def open(self, num_outputs: int) -> None:
        height, width = self.shape
        for kind in ("masks", "overlays"):
            path = self.path(kind, self.fmt)
            self.sinks[kind] = TiffSink(path, height, width) if self.fmt == "tiff" else PngSink(path, height, width)
        if self.probabilities:  # K channels do not fit PNG: always TIFF, uint8 = round(255 * p)
            self.sinks["probabilities"] = TiffSink(self.path("probabilities", "tiff"), height, width, num_outputs)

    def close(self) -> dict[str, Path]:
        for sink in self.sinks.values():
            sink.close()
        return {kind: sink.path for kind, sink in self.sinks.items()}

    def abort(self) -> None:
        for sink in self.sinks.values():
            sink.abort()


class _BandWorker:
    """Runs ``handle(top, probs)`` on finished bands in a thread, beside the model's predictions.

    A queue of 2 bounds the bands in flight; an error in ``handle`` is raised in the caller's
    thread by the next ``put`` or by ``finish``.
    """

    def __init__(self, handle: Callable[[int, np.ndarray], None]) -> None:
        self._handle = handle
        self._queue: queue.Queue[Optional[tuple[int, np.ndarray]]] = queue.Queue(maxsize=2)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="tiled-bands", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:  # after an error, only drain so the producer never blocks
                try:
                    self._handle(*item)
                except BaseException as err:  # re-raised in the producer's thread
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, top: int, probs: np.ndarray) -> None:
        self._raise()
        self._queue.put((top, probs))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def finish(self) -> None:
        self.stop()
        self._raise()


def segment_file(
    path: Path,
    predictor: PredictFn,
    options: TiledOptions,
    image_options: ImageOptions,
    palette: np.ndarray,
    out_dir: Path,
    mask_path: Optional[Path] = None,
    progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[int], None]] = None,
    mask_options: Optional[MaskOptions] = None,
    max_unmatched: float = 0.01,
) -> TiledResult:
    """Tile one image file; write its colour mask, overlay (and probabilities); score it.

    Args:
        path: Image file (PNG/JPEG/BMP read whole, TIFF read lazily).
        predictor: (N, tile, tile, channels) float32 in [0, 1] -> (N, tile, tile, K) probabilities
            (a ``flexseg.inference.predict.Predictor`` at the tile size).
        options: Tiling and output settings.
        image_options: How image pixels become model input (channels, colour options).
        palette: (K', 3) uint8 display colours, K' = K (softmax) or 2 (K = 1, sigmoid).
        out_dir: Folder of ``masks/``, ``overlays/`` and ``probabilities/``.
        mask_path: Optional mask of the same size to score against (any format training reads).
        progress: Called with the number of tiles of every predicted batch.
        on_start: Called once with the total number of tiles, before the first batch.
        mask_options: How `mask_path` decodes to classes (None: nearest colour of `palette`).
        max_unmatched: Fraction of mask pixels allowed to match no class (`dataset.max_unmatched`).

    Returns:
        The written files, the image size, the tile count and, with a mask, (K', K') confusion.

    Raises:
        FlexsegError: an unreadable image or mask, a mask of another size, or one with more
            unmatched pixels than `max_unmatched` allows.
    """
    mask_options = mask_options or MaskOptions(palette)
    with contextlib.ExitStack() as stack:
        reader = open_image(path)
        stack.callback(reader.close)
        truth = _Truth(mask_path, mask_options, max_unmatched) if mask_path is not None else None
        if truth is not None:
            stack.callback(truth.close)
        height, width = reader.shape[:2]
        if truth is not None and truth.shape != (height, width):
            raise FlexsegError(
                f"The mask '{mask_path}' is {truth.shape[1]}x{truth.shape[0]} but the image '{path}' is "
                f"{width}x{height}; masks in tiling.masks_dir must match their image's size."
            )
        if truth is not None:
            truth.check()  # a whole-read mask fails here, before any prediction
        tiles = count_tiles(height, width, options.tile_size, options.overlap)
        if on_start is not None:
            on_start(tiles)
        fmt = choose_format(options.output_format, path, height, width)
        log.debug("%s: %dx%d px, %d tiles, %s output", path.name, width, height, tiles, fmt)
        outputs = _Outputs(out_dir, path.stem, fmt, (height, width), options.save_probabilities)
        num_classes = len(palette)
        confusion = np.zeros((num_classes, num_classes), np.int64) if truth is not None else None

        def handle(top: int, probs: np.ndarray) -> None:
            if not outputs.sinks:
                outputs.open(probs.shape[-1])
            stop = top + len(probs)
            labels = labels_from_probs(probs)
            colour = viz.colorize(labels, palette)
            outputs.sinks["masks"].write_rows(colour)
            rgb = reader.read_rows(top, stop)
            outputs.sinks["overlays"].write_rows(viz.overlay(rgb, labels, palette, colour=colour))
            if "probabilities" in outputs.sinks:
                outputs.sinks["probabilities"].write_rows((probs * 255 + 0.5).astype(np.uint8))
            if truth is not None and confusion is not None:
                np.add(confusion, compute_confusion(truth.read_rows(top, stop), labels, num_classes), out=confusion)

        worker = _BandWorker(handle)
        try:
            bands = iter_tiled_bands(
                ModelInput(reader, image_options), predictor, options.tile_size, options.overlap,
                options.batch_size, options.blend, progress, tta=options.tta,
            )
            for top, probs in bands:
                worker.put(top, probs)
            worker.finish()
            if truth is not None:
                truth.check()  # a TIFF mask's unmatched pixels are known after its last band
            written = outputs.close()
        except BaseException:
            worker.stop()
            outputs.abort()
            raise
    return TiledResult(written, (height, width), tiles, confusion)
