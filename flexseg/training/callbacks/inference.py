"""Epoch-change inference: after every epoch, predict fixed images and save/log the pictures.

`EpochInference` shows a few model-size images as image | truth | prediction rows;
`EpochTiledInference` predicts one large image with the sliding window (`flexseg.inference.sliding_window`)
and shows overlay | colour mask. Both predict through `flexseg.inference.predict.Predictor`, as
eval/infer/tiled do, write `<out_dir>/epoch_NNN.png` and log the picture to MLflow by step (the
MLflow UI shows a step slider) and as the artifact `<key>/epoch_NNN.png`. A new training starts
with the untrained model's picture, `epoch_000.png` at step 0: the slider opens on a picture, and
the first epochs compare against a baseline.

Pictures cost forward passes at every epoch end; a `PictureBudget` shared by both callbacks keeps
them to a share of the training time (`callbacks.pictures_share`): an epoch's pictures are skipped
while the time spent on pictures is above that share of the time since training began; the first
epoch a training runs and its last one always get their pictures.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

from flexseg.inference.predict import Predictor
from flexseg.inference.sliding_window import predict_tiled
from flexseg.reporting import viz
from flexseg.reporting.plots import fit_for_display
from flexseg.scoring import labels_from_probs

log = logging.getLogger(__name__)

ImageLogger = Callable[[np.ndarray, str, int], None]  # (RGB uint8 image, key, step)
FileLogger = Callable[[Path, str], None]  # (local file, artifact folder)


def _when(epoch: int) -> str:
    """Caption of the picture of 0-based `epoch` (-1: before training)."""
    return "untrained" if epoch < 0 else f"epoch {epoch + 1}"


LOGGED_SIDE = 1024  # the longest side of the step-slider copy in MLflow (the PNG file keeps full size)


class PictureBudget:
    """The share of training wall time the epoch pictures may take, shared by the picture callbacks.

    Args:
        share: At most this fraction of the time since training began goes to pictures (0 < share <= 1);
            None: no limit, every epoch is pictured.
    """

    def __init__(self, share: Optional[float]) -> None:
        self.share, self.spent, self.start = share, 0.0, None  # type: Optional[float], float, Optional[float]

    def begin(self) -> None:
        """Start the training clock (the first call only: both callbacks call it)."""
        if self.start is None:
            self.start = time.perf_counter()

    def allows(self) -> bool:
        """Whether an epoch's pictures fit: the time spent on them so far is within the share."""
        if self.share is None or self.start is None:
            return True
        return self.spent <= self.share * (time.perf_counter() - self.start)

    def charge(self, seconds: float) -> None:
        """Count `seconds` of picturing."""
        self.spent += seconds


class _EpochPictures(keras.callbacks.Callback):
    """Writes `<out_dir>/epoch_NNN.png` and hands it to MLflow: by step under the image key `key`, and
    as the file `<key>/epoch_NNN.png`.

    Args:
        out_dir: Folder for `epoch_NNN.png`.
        log_image: Sends the picture to MLflow by step; None logs nothing.
        log_file: Copies the written PNG into the run's artifacts; None copies nothing.
        baseline: Picture the untrained model at step 0 when training begins (a new run; a resumed
            run already has it).
        budget: Skips an epoch's pictures while pictures took more than their share of the training
            time (the first and the last epoch are always pictured); None: every due epoch.
    """

    key = ""

    def __init__(self, out_dir: Path, log_image: Optional[ImageLogger], log_file: Optional[FileLogger],
                 baseline: bool, budget: Optional[PictureBudget] = None) -> None:
        super().__init__()
        self.out_dir, self.log_image, self.log_file, self.baseline = out_dir, log_image, log_file, baseline
        self.budget = budget or PictureBudget(None)
        self._last_epoch: Optional[int] = None  # 0-based epoch last seen
        self._done: Optional[int] = None  # 0-based epoch last pictured

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.baseline and not (self.out_dir / "epoch_000.png").exists():
            self.picture(-1)
        self.budget.begin()

    def due(self, epoch: int) -> bool:
        """Whether 0-based `epoch` is one to picture (before the time budget has its say)."""
        return True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._last_epoch = epoch
        if self.due(epoch) and (self._done is None or self.budget.allows()):  # the first one always
            self._timed_picture(epoch)
        elif self.due(epoch):
            log.debug("%s of epoch %d skipped: pictures are over callbacks.pictures_share", self.key, epoch + 1)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._last_epoch is not None and self._done != self._last_epoch:
            self._timed_picture(self._last_epoch)

    def _timed_picture(self, epoch: int) -> None:
        start = time.perf_counter()
        self._done = epoch
        self.picture(epoch)
        self.budget.charge(time.perf_counter() - start)

    def picture(self, epoch: int) -> None:
        """Predict now and publish the picture of 0-based `epoch` (-1: before training) at step epoch + 1."""
        raise NotImplementedError

    def publish(self, picture: np.ndarray, step: int) -> None:
        """Write `epoch_<step>.png`; log it by step (at most `LOGGED_SIDE` pixels a side: MLflow
        encodes it again, ~0.5 s for a 2048x1536 grid) and as the full-size file."""
        path = viz.write_rgb(self.out_dir / f"epoch_{step:03d}.png", picture)
        if self.log_image is not None:
            self.log_image(fit_for_display(picture, 1, LOGGED_SIDE), self.key, step)
        if self.log_file is not None:
            self.log_file(path, self.key)


class EpochInference(_EpochPictures):
    """After every epoch, predict a few fixed images and save/log an image | truth | prediction grid.

    Args:
        images: (N, H, W, C) float32 in [0, 1].
        targets: (N, H, W, K|1) model targets.
        palette: (K, 3) uint8 class colours.
        out_dir, log_image, log_file, baseline, budget: As `_EpochPictures`.
    """

    key = "epoch_change_infer"

    def __init__(self, images: np.ndarray, targets: np.ndarray, palette: np.ndarray, out_dir: Path,
                 log_image: Optional[ImageLogger] = None, log_file: Optional[FileLogger] = None,
                 baseline: bool = True, budget: Optional[PictureBudget] = None) -> None:
        super().__init__(out_dir, log_image, log_file, baseline, budget)
        self.images, self.palette = images, palette
        self.truth_panels = [viz.colorize(t, palette) for t in labels_from_probs(targets)]
        self.image_panels = [viz.to_uint8_rgb(img) for img in images]
        self._predictor: Optional[Predictor] = None  # compiled once per model, reads its current weights

    def picture(self, epoch: int) -> None:
        if self._predictor is None or self._predictor.model is not self.model:
            self._predictor = Predictor(self.model, len(self.images))
        pred = self._predictor.labels(self.images)
        rows = [
            [img, truth, viz.colorize(p, self.palette)]
            for img, truth, p in zip(self.image_panels, self.truth_panels, pred)
        ]
        self.publish(viz.build_grid(rows, ["image", "truth", f"prediction ({_when(epoch)})"]), epoch + 1)


class EpochTiledInference(_EpochPictures):
    """After every epoch, sliding-window inference of one large image; save/log overlay | mask.

    The training model is rebuilt once at the tile size (`Predictor.at_size`, a copy of its
    weights) and gets the current weights every epoch (`Predictor.refresh`).

    Args:
        image: (H, W, 3) uint8 RGB, any size, for the overlay.
        inputs: (H, W, C) float32 model input of the same image, as training reads images.
        palette: (K, 3) uint8 class colours.
        out_dir, log_image, log_file, baseline, budget: As `_EpochPictures`.
        tile_size, overlap, batch_size, blend: As `flexseg.inference.sliding_window.predict_tiled`.
        every: Predict after every `every`-th epoch (and after the last one).
        max_side: Longest side of each saved/logged panel (at least 256; full-size labels are not kept).
    """

    key = "epoch_change_tiled"

    def __init__(self, image: np.ndarray, inputs: np.ndarray, palette: np.ndarray, out_dir: Path, tile_size: int,
                 overlap: float, batch_size: int, blend: str, log_image: Optional[ImageLogger] = None,
                 every: int = 1, max_side: int = 1024, log_file: Optional[FileLogger] = None,
                 baseline: bool = True, budget: Optional[PictureBudget] = None) -> None:
        super().__init__(out_dir, log_image, log_file, baseline, budget)
        self.image, self.x, self.palette, self.max_side = image, inputs, palette, max_side
        self.tile_size, self.overlap, self.batch_size, self.blend = tile_size, overlap, batch_size, blend
        self._predictor: Optional[Predictor] = None
        self._source: Optional[keras.Model] = None  # the model `_predictor` was built from
        self.every = max(int(every), 1)

    def predict_labels(self) -> np.ndarray:
        """(H, W) class indices of the large image with the current weights."""
        if self._predictor is None or self._source is not self.model:
            self._predictor = Predictor(self.model, self.batch_size).at_size(self.tile_size, self.tile_size)
            self._source = self.model
        else:
            self._predictor.refresh()
        probs = predict_tiled(self.x, self._predictor, self.tile_size, self.overlap, self.batch_size, self.blend)
        return labels_from_probs(probs[None])[0]

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0

    def picture(self, epoch: int) -> None:
        labels = self.predict_labels()
        overlay = fit_for_display(viz.overlay(self.image, labels, self.palette), 256, self.max_side)
        mask = fit_for_display(viz.colorize(labels, self.palette), 256, self.max_side, nearest=True)
        self.publish(viz.build_grid([[overlay, mask]], [f"overlay ({_when(epoch)})", "prediction"]), epoch + 1)
