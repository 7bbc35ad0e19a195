"""Reading one image or mask file into arrays: every format and mask kind the reference datasets use.

Images: png/jpg/tif/bmp, 8- or 16-bit, gray/RGB/RGBA -> (H, W, channels) float32 in [0, 1], with the
reference options `color_order`, `color_converter` (a cv2 constant looked up by name) and `gamma`.
Masks -> (H, W) class indices: RGB colours by nearest class colour, gray by threshold, index PNGs
(palette or plain values) and `.npz` arrays (key `mask`).
These numpy functions serve the tf.data pipeline (through `tf.numpy_function`), `mode=stats` and
the tiled/infer modes alike, so every mode reads a file the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flexseg.config.schemas import DatasetConfig
from flexseg.data.masks import build_palette, match_colors
from flexseg.errors import FlexsegError

MASK_FORMATS = ("auto", "rgb", "gray", "index")
COLOR_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class ImageOptions:
    """How image files become model input."""

    channels: int = 3
    color_order: str = "RGB"
    color_converter: int | None = None  # a resolved cv2.COLOR_* code
    gamma: float | None = None
    interpolation: str = "auto"  # auto (area when shrinking, bilinear when enlarging) | area | bilinear


@dataclass(frozen=True)
class MaskOptions:
    """How mask files become class indices."""

    palette: np.ndarray  # (K, 3) uint8 class colours
    mask_format: str = "auto"
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
    if cfg.mask_format not in MASK_FORMATS:
        raise FlexsegError(f"dataset.mask_format='{cfg.mask_format}' is unknown; use one of {', '.join(MASK_FORMATS)}.")
    if cfg.color_order.upper() not in COLOR_ORDERS:
        raise FlexsegError(f"dataset.color_order='{cfg.color_order}' is unknown; use RGB or BGR.")
    if cfg.image_interpolation not in ("auto", "area", "bilinear"):
        raise FlexsegError(f"dataset.image_interpolation='{cfg.image_interpolation}' is unknown; use auto, area or bilinear.")
    image = ImageOptions(channels, cfg.color_order.upper(), resolve_color_converter(cfg.color_converter),
                         cfg.gamma, cfg.image_interpolation)
    mask = MaskOptions(build_palette(cfg.classes), cfg.mask_format, cfg.color_tolerance, cfg.threshold,
                       cfg.blur, cfg.binarize)
    return image, mask


def _decode(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise FlexsegError(f"Cannot decode '{path}': empty, corrupt or not an image. Replace or remove it.")
    return img


def convert_image(pixels: np.ndarray, opts: ImageOptions) -> np.ndarray:
    """RGB pixels (a whole image or a band of rows) -> model input, with the colour options applied.

    Args:
        pixels: (H, W, 3) RGB, uint8 / uint16 / float in [0, 1].
        opts: channel/colour options.

    Returns:
        (H, W, opts.channels) float32 in [0, 1].
    """
    if opts.color_converter is not None:  # the reference converts the 8-bit BGR image cv2 reads
        if pixels.dtype == np.uint16:
            pixels = (pixels // 257).astype(np.uint8)
        elif pixels.dtype != np.uint8:
            pixels = (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
        out = cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), opts.color_converter).astype(np.float32) / 255.0
    else:
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(pixels.dtype, 1.0)
        out = pixels.astype(np.float32) / scale
        if opts.color_order == "BGR":
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
    img = _decode(Path(path))
    if img.dtype not in (np.uint8, np.uint16):
        img = np.clip(img.astype(np.float32) / max(float(img.max()), 1e-12), 0, 1)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    out = convert_image(img, opts)
    if size is not None and out.shape[:2] != tuple(size):
        shrink = size[0] * size[1] < out.shape[0] * out.shape[1]
        area = opts.interpolation == "area" or (opts.interpolation == "auto" and shrink)
        out = cv2.resize(out, (size[1], size[0]), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        out = out.reshape(size[0], size[1], -1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _load_mask_array(path: Path) -> tuple[np.ndarray, bool]:
    """Raw mask pixels and whether they are class indices already (palette PNG / 2-D npz)."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arr = npz["mask"]
        except (KeyError, ValueError, OSError) as err:
            raise FlexsegError(f"Cannot read mask '{path}': an .npz mask needs an array under key 'mask' ({err}).") from err
        return arr, arr.ndim == 2
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode == "P":  # palette PNG: the stored values are the class indices
                    return np.asarray(im), True
        except (OSError, ValueError):
            pass  # _decode reports it
    img = _decode(path)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img, False


def decode_mask_array(arr: np.ndarray, opts: MaskOptions, is_index: bool = False) -> tuple[np.ndarray, int]:
    """Mask pixels (a whole mask or a band of rows) -> class indices.

    Args:
        arr: (H, W) or (H, W, 3) RGB mask pixels, uint8/uint16 (or class indices when `is_index`).
        opts: mask options.
        is_index: the pixels are class indices already (palette PNG, 2-D npz).

    Returns:
        ((H, W) uint8 class indices, number of pixels that match no class: farther than
        `color_tolerance` from every class colour, or an index >= the class count).
    """
    fmt = opts.mask_format
    if fmt == "auto":
        fmt = "index" if is_index else "rgb"
    if fmt == "index":
        values = arr if arr.ndim == 2 else arr[..., 0]
        unmatched = int(np.count_nonzero(values >= opts.num_classes))
        return np.where(values < opts.num_classes, values, 0).astype(np.uint8), unmatched
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    if fmt == "gray" and opts.binarize:
        gray = arr if arr.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(arr[..., :3], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        if opts.blur > 0:
            k = opts.blur | 1  # odd kernel
            gray = cv2.GaussianBlur(gray, (k, k), 0)
        return (gray >= opts.threshold).astype(np.uint8), 0
    return match_colors(arr, opts.palette, opts.color_tolerance)  # rgb, or gray without binarize


def read_labels(path: Path | str, opts: MaskOptions, size: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """Read a mask file as class indices, resized with nearest neighbour only.

    Returns:
        ((H, W) uint8 class indices, number of unmatched pixels; see `decode_mask_array`).
    """
    arr, is_index = _load_mask_array(Path(path))
    labels, unmatched = decode_mask_array(arr, opts, is_index)
    if size is not None and labels.shape != tuple(size):
        labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return labels, unmatched
