"""Images of any size handed over in memory -> labels (or probabilities), as `mode=infer` / `mode=tiled` make them.

The prediction behind `mode=export`'s MLflow model (`flexseg/tracking/pyfunc_model.py`). Inputs are
numpy arrays of pixels or encoded images (PNG/JPEG/TIFF bytes, or base64 text of them, which is what
a JSON request carries), read with the conversions of the files' readers
(`flexseg.data.readers.pixels_from_decoded` / `rgb_pixels`) and made model input with the dataset's
colour options (`convert_image`: colour order, converter, gamma). An image no larger than the model
is predicted at the model size and its probabilities resized back, as `mode=infer` does
(`resize_image`, `resize_probabilities`); a larger one is tiled with the blended sliding window of
`mode=tiled` (`predict_tiled`, the same tile size, overlap, blend and batch).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import keras
import numpy as np

from flexseg.config.choices import ColorOrder, Interpolation
from flexseg.data.readers import (
    ImageOptions,
    convert_image,
    pixels_from_decoded,
    resize_image,
    resolve_color_converter,
    rgb_pixels,
)
from flexseg.errors import FlexsegError
from flexseg.inference.image_io import ArrayReader, ModelInput
from flexseg.inference.predict import Predictor, resize_probabilities
from flexseg.inference.sliding_window import predict_tiled
from flexseg.scoring import labels_from_probs

OUTPUTS = ("labels", "probabilities")
IMAGE_COLUMN = "image"  # the DataFrame column (or JSON `inputs` key) of encoded images


@dataclass(frozen=True)
class ServingOptions:
    """How pixels become model input and how large images are tiled (plain values: MLflow's model config).

    Attributes mirror `dataset.{color_order, color_converter, gamma, image_interpolation}`,
    `model.image_channels`, `infer.batch_size` and `tiling.{tile_size, overlap, blend, batch_size, tta}`.
    """

    channels: int = 3
    color_order: str = "RGB"
    color_converter: Optional[str] = None  # a cv2 COLOR_* name
    gamma: Optional[float] = None
    interpolation: str = "auto"
    batch_size: int = 4
    tile_size: int = 256
    overlap: float = 64
    blend: str = "gaussian"
    tile_batch_size: int = 4
    tta: bool = False

    def image_options(self) -> ImageOptions:
        """The readers' `ImageOptions` of these settings."""
        return ImageOptions(self.channels, ColorOrder(self.color_order), resolve_color_converter(self.color_converter),
                            self.gamma, Interpolation(self.interpolation))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ServingOptions:
        """The options of a saved dict; keys it lacks keep their defaults, unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def decode_image(data: bytes | str) -> np.ndarray:
    """Encoded image bytes (or base64 text of them) -> (H, W, 3) RGB pixels as the file readers give them.

    Raises:
        FlexsegError: when the data is not base64 or not an image OpenCV decodes.
    """
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError) as err:
            raise FlexsegError(f"An image given as text must be base64 of a PNG/JPEG/TIFF file ({err}).") from err
    buffer = np.frombuffer(bytes(data), dtype=np.uint8)
    img = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if img is None:
        raise FlexsegError(f"Cannot decode an input image ({buffer.size} bytes): give PNG, JPEG or TIFF file bytes.")
    return pixels_from_decoded(img)


def _pixels(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) numbers -> RGB pixels; integers (JSON lists arrive as int64) as 8/16-bit samples."""
    if array.dtype.kind in "iu" and array.dtype not in (np.uint8, np.uint16):
        top = int(array.max()) if array.size else 0
        array = array.astype(np.uint8 if top <= 255 else np.uint16)
    return rgb_pixels(array)


def _one(item: Any) -> np.ndarray:
    """One image of a batch: encoded bytes/text, or an array of pixels."""
    if isinstance(item, (bytes, bytearray, str)):
        return decode_image(item)
    array = np.asarray(item)
    if array.dtype.kind in "SUO" and array.size == 1:
        return decode_image(array.item())
    return _pixels(array)


def images_from_input(model_input: Any) -> tuple[list[np.ndarray], bool]:
    """Every accepted input form -> (RGB pixel arrays, whether it was a single image).

    Accepted: a DataFrame whose `image` column (else its first) holds encoded images; a dict with
    such a key; a list of encoded images or pixel arrays; an array of encoded images (what JSON
    `inputs` of base64 strings become); pixels (H, W), (H, W, C) with C in 1, 3, 4 (one image),
    (N, H, W, C) or (N, H, W) (a batch); or one encoded image.
    """
    if hasattr(model_input, "columns") and hasattr(model_input, "iloc"):  # a pandas DataFrame
        column = IMAGE_COLUMN if IMAGE_COLUMN in model_input.columns else model_input.columns[0]
        return [_one(v) for v in model_input[column].tolist()], False
    if isinstance(model_input, dict):
        if not model_input:
            raise FlexsegError(f"The input is an empty dict; give {{'{IMAGE_COLUMN}': [images]}}.")
        values = model_input.get(IMAGE_COLUMN, next(iter(model_input.values())))
        return images_from_input(values)[0], False
    if isinstance(model_input, (bytes, bytearray, str)):
        return [decode_image(model_input)], True
    if isinstance(model_input, (list, tuple)):
        return [_one(v) for v in model_input], False
    array = np.asarray(model_input)
    if array.dtype.kind in "SUO":
        return [decode_image(v) for v in array.ravel().tolist()], False
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] <= 4):
        return [_pixels(array)], True
    if array.ndim in (3, 4):
        return [_pixels(a) for a in array], False
    raise FlexsegError(f"Cannot read an image batch of shape {array.shape}: give (H, W, C) or (N, H, W, C) pixels "
                       "or encoded images.")


class Segmenter:
    """A loaded model predicting whole images of any size.

    Args:
        model: (N, h, w, C) -> (N, h, w, K) probabilities (fully convolutional, rebuilt for tiles).
        options: Colour options and tiling settings.
    """

    def __init__(self, model: keras.Model, options: ServingOptions) -> None:
        self.options, self.image_options = options, options.image_options()
        self.predictor = Predictor(model, options.batch_size)
        self._model = model
        self._tiles: Optional[Predictor] = None

    @property
    def tiles(self) -> Predictor:
        """The predictor of `tile_size` tiles (as `mode=tiled` builds it), made on first use."""
        if self._tiles is None:
            size = self.options.tile_size
            self._tiles = Predictor(self._model, self.options.tile_batch_size).at_size(size, size)
        return self._tiles

    def probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """RGB pixel arrays -> one (H_i, W_i, K) float32 probability map per image, at its own size.

        Images no larger than the model go through it together at the model size, as `mode=infer`
        predicts them; larger ones through the sliding window of `mode=tiled`.
        """
        o = self.options
        h, w, _ = self.predictor.input_size
        small = [i for i, img in enumerate(images) if img.shape[0] <= h and img.shape[1] <= w]
        out: list[Optional[np.ndarray]] = [None] * len(images)
        if small:
            batch = np.stack([resize_image(convert_image(images[i], self.image_options), (h, w), o.interpolation)
                              for i in small])
            for i, probs in zip(small, self.predictor(batch)):
                out[i] = resize_probabilities(probs, *images[i].shape[:2])
        for i, img in enumerate(images):
            if out[i] is None:
                out[i] = predict_tiled(ModelInput(ArrayReader(img), self.image_options), self.tiles, o.tile_size,
                                       o.overlap, o.tile_batch_size, o.blend, tta=o.tta)
        return [p for p in out if p is not None]

    def predict(self, model_input: Any, output: str = "labels") -> np.ndarray | list[np.ndarray]:
        """Label maps (uint8 class indices) or probabilities of the images of `model_input`.

        Args:
            model_input: Any form `images_from_input` reads.
            output: `labels` ((H, W) uint8 per image) or `probabilities` ((H, W, K) float32).

        Returns:
            One image: its array. Several: (N, ...) stacked when they share a size, else a list.
        """
        if output not in OUTPUTS:
            raise FlexsegError(f"output='{output}' is not one of {', '.join(OUTPUTS)}.")
        images, single = images_from_input(model_input)
        probs = self.probabilities(images)
        results = [labels_from_probs(p) for p in probs] if output == "labels" else probs
        if single:
            return results[0]
        if results and all(r.shape == results[0].shape for r in results):
            return np.stack(results)
        return results
