"""Geometric augmentation maths: one affine map plus one dense displacement field per image.

Every geometric op is expressed as a map from output pixel to source pixel, so image and mask are
resampled once, together: the image bilinearly, the mask with nearest neighbour (no new label
value can appear). Coordinates are pixel indices (pixel centres at integers); the affine part is the
8-parameter transform of `keras.ops.image.affine_transform` (output (x, y) reads the source at
(a0 x + a1 y + a2, b0 x + b1 y + b2)).

Random fields are drawn from stateless seeds (shape (2,)), so a seed always gives the same warp.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

_EXACT_COS = (1.0, 0.0, -1.0, 0.0)  # cos / sin of 0, 90, 180, 270 degrees, exactly
_EXACT_SIN = (0.0, 1.0, 0.0, -1.0)


def _cos_sin(angle_deg: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """cos and sin of an angle in degrees, exact for multiples of 90 (so rot90 permutes pixels)."""
    quarter = tf.round(angle_deg / 90.0)
    exact = tf.abs(angle_deg - 90.0 * quarter) < 1e-6
    k = tf.math.floormod(tf.cast(quarter, tf.int32), 4)
    rad = angle_deg * (math.pi / 180.0)
    cos = tf.where(exact, tf.gather(_EXACT_COS, k), tf.cos(rad))
    sin = tf.where(exact, tf.gather(_EXACT_SIN, k), tf.sin(rad))
    return cos, sin


def compute_affine(
    height: int,
    width: int,
    angle: tf.Tensor,
    scale: tf.Tensor,
    shear: tf.Tensor,
    hflip: tf.Tensor,
    vflip: tf.Tensor,
) -> tf.Tensor:
    """Output -> source affine map of: scale, then vertical shear, then rotation, then flips.

    All about the image centre ((W - 1) / 2, (H - 1) / 2). The rotation follows cv2 (positive
    angles turn the content counter-clockwise on screen), the shear the reference
    (y += shear * (x - centre)).

    Args:
        height, width: image size in pixels.
        angle: () float32 degrees.
        scale: () float32 content scale (< 1 zooms out).
        shear: () float32 shear factor.
        hflip, vflip: () bool mirror left-right / top-bottom.

    Returns:
        (8,) float32 transform `[a0, a1, a2, b0, b1, b2, 0, 0]`.
    """
    cos, sin = _cos_sin(angle)
    fx = tf.where(hflip, -1.0, 1.0)
    fy = tf.where(vflip, -1.0, 1.0)
    # inverse(flip @ rotation @ shear @ scale) = scale^-1 @ shear^-1 @ rotation^-1 @ flip
    a0 = cos * fx / scale
    a1 = -sin * fy / scale
    b0 = (sin - shear * cos) * fx / scale
    b1 = (cos + shear * sin) * fy / scale
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zero = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])


def _gaussian_kernel(sigma: float) -> tf.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (x / sigma) ** 2)
    return k / tf.reduce_sum(k)


def _smooth(field: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable gaussian filter of (h, w, C), zero outside (as scipy's mode='constant')."""
    channels = field.shape[-1]
    k = _gaussian_kernel(sigma)
    kx = tf.tile(tf.reshape(k, (1, -1, 1, 1)), (1, 1, channels, 1))
    ky = tf.tile(tf.reshape(k, (-1, 1, 1, 1)), (1, 1, channels, 1))
    out = tf.nn.depthwise_conv2d(field[None], kx, (1, 1, 1, 1), "SAME")
    return tf.nn.depthwise_conv2d(out, ky, (1, 1, 1, 1), "SAME")[0]


def _coarse_factor(sigma: float, min_sigma: float) -> int:
    """Grid step for drawing a field smoothed by `sigma`: the coarse grid keeps >= min_sigma cells."""
    return max(1, int(sigma // min_sigma))


def compute_elastic_field(seed: tf.Tensor, height: int, width: int, alpha: float, sigma: float) -> tf.Tensor:
    """Simard elastic field: alpha * gaussian_sigma(uniform(-1, 1)), per axis, in pixels.

    The noise is drawn on a grid `f` times coarser and smoothed with sigma / f, then upsampled
    bilinearly and scaled by 1 / f: the same statistics as smoothing full-resolution noise (white
    noise smoothed with sigma has std ~ 1 / sigma), at 1 / f**2 of the cost.

    Returns:
        (H, W, 2) float32 displacement (dx, dy).
    """
    f = _coarse_factor(sigma, 2.0)
    h, w = -(-height // f), -(-width // f)
    noise = tf.random.stateless_uniform((h, w, 2), seed=seed, minval=-1.0, maxval=1.0)
    coarse = _smooth(noise, sigma / f) * (alpha / f)
    return tf.image.resize(coarse, (height, width), method="bilinear")


def compute_distortion_field(seed: tf.Tensor, height: int, width: int, rsigma: float, strength: tf.Tensor) -> tf.Tensor:
    """The reference's smooth distortion: gradient of gaussian(rsigma)-smoothed normal noise.

    Each component is scaled so its peak is `strength * max(H, W)` pixels; the source is read at
    (x - dx, y - dy) as in the reference.

    Returns:
        (H, W, 2) float32 displacement.
    """
    f = _coarse_factor(rsigma, 4.0)
    h, w = -(-height // f), -(-width // f)
    potential = _smooth(tf.random.stateless_normal((h, w, 1), seed=seed), rsigma / f)[..., 0]
    padded = tf.pad(potential, ((1, 1), (1, 1)), mode="SYMMETRIC")
    gx = padded[1:-1, 2:] - padded[1:-1, :-2]
    gy = padded[2:, 1:-1] - padded[:-2, 1:-1]
    peak = strength * float(max(height, width))
    grad = tf.stack([gx / tf.reduce_max(tf.abs(gx)), gy / tf.reduce_max(tf.abs(gy))], axis=-1) * peak
    return -tf.image.resize(grad, (height, width), method="bilinear")


def _grid(height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(H, W) float32 x and y pixel indices."""
    y, x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    return x, y


def compute_barrel_field(height: int, width: int, center: tf.Tensor, radius: float, amount: float) -> tf.Tensor:
    """Barrel (amount > 0) / pincushion (amount < 0) displacement around `center`.

    Inside a circle of `radius * width` pixels a pixel at distance d from the centre reads the
    source at distance d * sin(pi d / (2 r))**amount along the same ray (the reference formula).

    Args:
        center: (2,) float32 (x, y) as fractions of width and height.

    Returns:
        (H, W, 2) float32 displacement.
    """
    x, y = _grid(height, width)
    dx = x - center[0] * width
    dy = y - center[1] * height
    r = radius * width
    d = tf.sqrt(dx * dx + dy * dy)
    inside = (d > 0.0) & (d < r)
    s = tf.where(inside, tf.sin(math.pi * d / (2.0 * r)), 1.0)
    factor = tf.pow(s, amount)
    return tf.stack([(factor - 1.0) * dx, (factor - 1.0) * dy], axis=-1)


def warp_affine(
    image: tf.Tensor, labels: tf.Tensor, transform: tf.Tensor, fill_mode: str
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply an affine map with Keras's `affine_transform` (bilinear image, nearest labels).

    Args:
        image: (H, W, C) float32.
        labels: (H, W) int32.
        transform: (8,) output -> source map.
        fill_mode: constant (0) | reflect.

    Returns:
        The warped (image, labels).
    """
    out = keras.ops.image.affine_transform(image, transform, "bilinear", fill_mode, 0.0)
    lab = keras.ops.image.affine_transform(tf.cast(labels[..., None], tf.float32), transform, "nearest", fill_mode, 0.0)
    return out, tf.cast(lab[..., 0], labels.dtype)


def warp_dense(
    image: tf.Tensor, labels: tf.Tensor, transform: tf.Tensor, displacement: tf.Tensor, fill_mode: str
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply the dense displacement, then the affine map, in one resampling (`map_coordinates`).

    Output pixel p reads the source at affine(p + displacement(p)).

    Args:
        image: (H, W, C) float32 with static H, W, C.
        labels: (H, W) int32.
        transform: (8,) output -> source affine map.
        displacement: (H, W, 2) float32 (dx, dy).
        fill_mode: constant (0) | reflect.

    Returns:
        The warped (image, labels).
    """
    height, width, channels = image.shape
    x, y = _grid(height, width)
    x = x + displacement[..., 0]
    y = y + displacement[..., 1]
    t = tf.unstack(transform)
    coords = tf.stack([t[3] * x + t[4] * y + t[5], t[0] * x + t[1] * y + t[2]])  # (row, col)
    planes = [keras.ops.image.map_coordinates(image[..., c], coords, 1, fill_mode, 0.0) for c in range(channels)]
    lab = keras.ops.image.map_coordinates(labels, coords, 0, fill_mode, 0)
    return tf.stack(planes, axis=-1), lab
