"""Reading one image or mask file into arrays: every format and mask kind the reference datasets use.

Images: png/jpg/tif/bmp, 8- or 16-bit, gray/RGB/RGBA -> (H, W, channels) float32 in [0, 1], with the
reference options `color_order`, `color_converter` (a cv2 constant looked up by name) and `gamma`.
Pixel types are converted here only (`rgb_pixels`, `to_unit_float`, `to_uint8`; the float rule is
`float_scale`), for training, eval, infer, tiled, stats and the epoch callbacks alike.
Mask files are read by `flexseg.data.mask_files` with the `MaskOptions` defined here.
These numpy functions serve the tf.data pipeline (through `tf.numpy_function`), `mode=stats` and
the tiled/infer modes alike, so every mode reads a file the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flexseg.config.choices import ColorOrder, Interpolation, MaskFormat
from flexseg.config.schemas import DatasetConfig
from flexseg.data.masks import build_palette
from flexseg.errors import FlexsegError


@dataclass(frozen=True)
class ImageOptions:
    """How image files become model input."""

    channels: int = 3
    color_order: ColorOrder = ColorOrder.RGB
    color_converter: int | None = None  # a resolved cv2.COLOR_* code
    gamma: float | None = None
    interpolation: Interpolation = Interpolation.auto  # auto (area when shrinking, bilinear when enlarging) | area | bilinear


@dataclass(frozen=True)
class MaskOptions:
    """How mask files become class indices."""

    palette: np.ndarray  # (K, 3) uint8 class colours
    mask_format: MaskFormat = MaskFormat.auto
    color_tolerance: float = 60.0
    threshold: int = 80
    blur: int = 0
    binarize: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.palette)


def resolve_color_converter(name: str | None) -> int | None:
    """`COLOR_BGR2HSV_FULL` -> cv2's integer code, looked up as an attribute (never evaluated).

    Raises:
        FlexsegError: naming `dataset.color_converter` when cv2 has no such constant.
    """
    if not name:
        return None
    code = getattr(cv2, name, None) if name.startswith("COLOR_") else None
    if not isinstance(code, int):
        close = [n for n in dir(cv2) if n.startswith("COLOR_") and name.upper().split("_", 1)[-1][:6] in n][:5]
        raise FlexsegError(
            f"dataset.color_converter='{name}' is not a cv2 colour conversion constant; use a name such as "
            f"COLOR_BGR2HSV_FULL{' (close: ' + ', '.join(close) + ')' if close else ''}."
        )
    return code


def options_from_config(cfg: DatasetConfig, channels: int) -> tuple[ImageOptions, MaskOptions]:
    """Reader options of a validated dataset config."""
    image = ImageOptions(channels, cfg.color_order, resolve_color_converter(cfg.color_converter),
                         cfg.gamma, cfg.image_interpolation)
    mask = MaskOptions(build_palette(cfg.classes), cfg.mask_format, cfg.color_tolerance, cfg.threshold,
                       cfg.blur, cfg.binarize)
    return image, mask


def decode_file(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise FlexsegError(f"Cannot decode '{path}': empty, corrupt or not an image. Replace or remove it.")
    return img


def _colour_samples(pixels: np.ndarray) -> np.ndarray:
    """(rows, W[, S]) samples -> the colour ones, (rows, W, 1) gray or (rows, W, 3) RGB (a view)."""
    if pixels.ndim == 2:
        return pixels[..., None]
    return pixels[..., :1] if pixels.shape[-1] < 3 else pixels[..., :3]  # gray(+alpha) | RGB(+alpha, ...)


def float_scale(pixels: np.ndarray) -> float:
    """The divisor that brings a float image into [0, 1]: its largest finite colour sample, at least 1.

    The float rule of every mode: a float (or other non-8/16-bit) image already in [0, 1] is kept as
    it is; one with larger values (say 0..1000) is divided by its largest value. The divisor is one
    number per image, so a lazily read TIFF computes it once over all its rows when opened
    (``max`` over bands of this function) and every band of it is scaled alike.

    Args:
        pixels: (rows, W[, S]) samples of any type; alpha is ignored.
    """
    samples = _colour_samples(pixels)
    if samples.dtype in (np.uint8, np.uint16, np.bool_) or samples.size == 0:
        return 1.0
    top = np.nanmax(samples) if samples.dtype.kind == "f" else samples.max()
    if not np.isfinite(top):  # inf / all-nan: the largest finite value decides
        finite = samples[np.isfinite(samples)]
        top = finite.max() if finite.size else 1.0
    return max(float(top), 1.0)


def to_unit_float(pixels: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Pixels -> float32 in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0/1, others / ``scale``.

    Args:
        pixels: any shape; ``scale`` is ``float_scale`` of the whole image for float input.
    """
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 65535.0)
    out = np.nan_to_num(pixels.astype(np.float32) / np.float32(scale), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Pixels -> uint8: uint16 // 257, float in [0, 1] (``to_unit_float``) rounded from x * 255."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels // 257).astype(np.uint8)
    return (to_unit_float(pixels) * 255.0 + 0.5).astype(np.uint8)


def rgb_pixels(pixels: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Stored samples (RGB order) -> (rows, W, 3) RGB as every reader hands them on.

    uint8 and uint16 stay as they are (full precision); bool becomes uint8 0/255; any other type
    becomes float32 in [0, 1] by the float rule (``float_scale``). One sample is gray (repeated),
    two are gray + alpha, three or more start with RGB.

    Args:
        pixels: (rows, W[, S]) samples of a whole image or of a band of its rows.
        scale: ``float_scale`` of the whole image; None computes it from ``pixels`` (a whole image).
    """
    samples = _colour_samples(pixels)
    if samples.dtype == np.bool_:
        samples = samples.astype(np.uint8) * 255
    elif samples.dtype not in (np.uint8, np.uint16):
        samples = to_unit_float(samples, float_scale(samples) if scale is None else scale)
    if samples.shape[-1] == 1:
        samples = np.repeat(samples, 3, axis=-1)
    return np.ascontiguousarray(samples)


def read_pixels(path: Path | str) -> np.ndarray:
    """An image file decoded whole as (H, W, 3) RGB pixels (see ``rgb_pixels``).

    Raises:
        FlexsegError: naming the file when it cannot be decoded.
    """
    return pixels_from_decoded(decode_file(Path(path)))


def pixels_from_decoded(img: np.ndarray) -> np.ndarray:
    """What `cv2.imdecode` gives ((H, W[, S]) samples, colour in BGR(A) order) -> (H, W, 3) RGB pixels.

    The one conversion of decoded files and of encoded images handed over in memory (`mode=export`'s
    MLflow model); see ``rgb_pixels``.
    """
    if img.ndim == 3 and img.shape[2] >= 3:
        img = img[..., 2::-1]  # OpenCV's BGR(A) -> RGB
    return rgb_pixels(img)


def convert_image(pixels: np.ndarray, opts: ImageOptions) -> np.ndarray:
    """RGB pixels (a whole image or a band of rows) -> model input, with the colour options applied.

    Args:
        pixels: (H, W, 3) RGB as ``rgb_pixels`` gives them: uint8 / uint16 / float32 in [0, 1].
        opts: channel/colour options.

    Returns:
        (H, W, opts.channels) float32 in [0, 1].
    """
    if opts.color_converter is not None:  # the reference converts the 8-bit BGR image cv2 reads
        bgr = cv2.cvtColor(np.ascontiguousarray(to_uint8(pixels)), cv2.COLOR_RGB2BGR)
        out = cv2.cvtColor(bgr, opts.color_converter).astype(np.float32) / 255.0
    else:
        out = to_unit_float(pixels)
        if opts.color_order == ColorOrder.BGR:
            out = out[..., ::-1]
    if opts.channels == 1:
        out = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)[..., None] if out.shape[2] == 3 else out[..., :1]
    if opts.gamma:
        out = np.power(out, 1.0 / opts.gamma, dtype=np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_image(path: Path | str, opts: ImageOptions, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as model input.

    Args:
        path: image file.
        opts: channel/colour options.
        size: (height, width) to resize to, or None for the original size.

    Returns:
        (H, W, opts.channels) float32 in [0, 1].
    """
    out = convert_image(read_pixels(path), opts)
    if size is not None:
        out = resize_image(out, size, opts.interpolation)
    return np.ascontiguousarray(out, dtype=np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: Interpolation) -> np.ndarray:
    """(H, W, C) model input -> (size[0], size[1], C); `image` itself when it has that size.

    `interpolation` auto: area when shrinking, bilinear when enlarging (`dataset.image_interpolation`).
    """
    if image.shape[:2] == tuple(size):
        return image
    shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
    area = interpolation == Interpolation.area or (interpolation == Interpolation.auto and shrink)
    out = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    return out.reshape(size[0], size[1], -1)
