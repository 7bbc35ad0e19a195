"""Online augmentation (the `augment` group): random, seeded ops on (image, labels) inside tf.data.

`build_augment(cfg)` returns an `AugmentFn` for `build_dataset(..., augment=...)`. Each op runs with
its probability `p` and draws its magnitude from its list / range, all from the per-pair stateless
seed the pipeline hands over, so the same seed gives the same batches under a parallel `map`.

Geometric ops (flips, rotation, shrink, shear, elastic deformation, smooth distortion, barrel /
pincushion) are composed into one map and applied to image and mask in a single resampling
(`flexseg.data.distort`). Photometric ops touch the image only: brightness and contrast are Keras's
`RandomBrightness` / `RandomContrast` transforms, blur is `keras.ops.image.gaussian_blur`; gamma,
noise and the reference's sharpening and brightening are small TensorFlow ops.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NoReturn

import keras
import tensorflow as tf

from flexseg.config.augment import AugmentConfig, BarrelConfig, FactorConfig, JitterConfig
from flexseg.data import distort
from flexseg.data.pipeline import AugmentFn
from flexseg.errors import FlexsegError

# Fold-in ids of the per-op seeds: append new ops at the end so existing streams stay the same.
OPS = (
    "hflip", "vflip", "rotation", "shrink", "shear", "deformation", "distortion", "barrdistortion",
    "pincdistortion", "sharpening", "brightening", "brightness", "contrast", "gamma", "noise", "blur",
)
GEOMETRIC = OPS[:9]
DENSE = ("deformation", "distortion", "barrdistortion", "pincdistortion")


def _fail(key: str, value: object, need: str) -> NoReturn:
    raise FlexsegError(f"augment.{key}={value} is invalid: {need}.")


def _check_range(key: str, values: list[float], low: float | None = None, strict: bool = False) -> None:
    if len(values) not in (0, 2) or (len(values) == 2 and values[0] > values[1]):
        _fail(key, list(values), "give [] or [low, high] with low <= high")
    if low is not None and values and (values[0] < low or (strict and values[0] == low)):
        _fail(key, list(values), f"values must be {'>' if strict else '>='} {low}")


def check_augment(cfg: AugmentConfig) -> None:
    """Raise FlexsegError naming the `augment.*` key whose value cannot work."""
    for op in OPS:
        p = getattr(cfg, op).p
        if not 0.0 <= p <= 1.0:
            _fail(f"{op}.p", p, "a probability is in [0, 1]")
    _check_range("rotation.range", cfg.rotation.range)
    if not (cfg.rotation.angles or cfg.rotation.range):
        _fail("rotation", "{angles: [], range: []}", "give angles, a range, or both")
    for op in ("shrink", "shear"):
        c: FactorConfig = getattr(cfg, op)
        _check_range(f"{op}.range", c.range)
        if not (c.factors or c.range):
            _fail(op, "{factors: [], range: []}", "give factors, a range, or both")
    if min(cfg.shrink.factors or [0.0]) + (cfg.shrink.range or [0.0])[0] <= 0.0:
        _fail("shrink", dataclasses.asdict(cfg.shrink), "every drawn scale factor must be > 0")
    d = cfg.deformation
    if d.alpha < 0 or d.sigma <= 0:
        _fail("deformation", f"{{alpha: {d.alpha}, sigma: {d.sigma}}}", "alpha >= 0 and sigma > 0")
    t = cfg.distortion
    if t.gaussian_filter_rsigma <= 0 or t.gaussian_filter_sigma < 0:
        _fail("distortion", f"{{gaussian_filter_rsigma: {t.gaussian_filter_rsigma}, gaussian_filter_sigma: "
              f"{t.gaussian_filter_sigma}}}", "rsigma > 0 and sigma >= 0")
    _check_range("distortion.range", t.range, low=0.0)
    if not (t.distortions or t.range) or min(t.distortions or [0.0]) < 0:
        _fail("distortion.distortions", list(t.distortions), "give strengths >= 0 (or a range)")
    for op in ("barrdistortion", "pincdistortion"):
        b: BarrelConfig = getattr(cfg, op)
        if b.radius <= 0 or b.amount <= -1:
            _fail(op, f"{{radius: {b.radius}, amount: {b.amount}}}", "radius > 0 and amount > -1")
        if not b.centers or any(len(c) != 2 or not all(0.0 <= v <= 1.0 for v in c) for c in b.centers):
            _fail(f"{op}.centers", [list(c) for c in b.centers], "a list of [x, y] fractions in [0, 1]")
    if cfg.sharpening.k < 0:
        _fail("sharpening.k", cfg.sharpening.k, "k >= 0")
    if cfg.brightening.alpha < 0:
        _fail("brightening.alpha", cfg.brightening.alpha, "alpha >= 0")
    for op, low, strict in (("brightness", None, False), ("contrast", 0.0, False), ("gamma", 0.0, True),
                            ("noise", 0.0, False), ("blur", 0.0, False)):
        j: JitterConfig = getattr(cfg, op)
        _check_range(f"{op}.range", j.range, low, strict)
        if j.p > 0 and not j.range:
            _fail(f"{op}.range", [], "give [low, high]")
    if cfg.blur.range and cfg.blur.range[1] > 10:
        _fail("blur.range", list(cfg.blur.range), "sigma up to 10 pixels")


def build_augment(cfg: AugmentConfig) -> AugmentFn | None:
    """The augmentation function of a config, or None when every op is off (`augment=none`).

    Raises:
        FlexsegError: naming the `augment.*` key with a value that cannot work.
    """
    check_augment(cfg)
    if all(getattr(cfg, op).p == 0 for op in OPS):
        return None
    return Augmenter(cfg)


def _op_seed(seed: tf.Tensor, op: str, draw: int) -> tf.Tensor:
    """Independent stateless seed for the `draw`-th random number of `op`."""
    fold = tf.random.experimental.stateless_fold_in
    return fold(fold(seed, OPS.index(op)), draw)


def _uniform(seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform((), seed=seed, minval=low, maxval=high)


def _pick(seed: tf.Tensor, op: str, values: list[float], span: list[float]) -> tf.Tensor:
    """`choice(values) + uniform(span)`; an empty list counts as [0], an empty span as no jitter."""
    out = tf.constant(0.0)
    if values:
        i = tf.random.stateless_uniform((), seed=_op_seed(seed, op, 1), maxval=len(values), dtype=tf.int32)
        out = tf.gather(tf.constant(values, tf.float32), i)
    if span:
        out = out + _uniform(_op_seed(seed, op, 2), span[0], span[1])
    return out


def _reflect_pad(image: tf.Tensor, pad: int) -> tf.Tensor:
    return tf.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="REFLECT")


class Augmenter:
    """Callable `(image (H, W, C) float32 in [0, 1], labels (H, W) int32, seed (2,) int64) -> (image, labels)`.

    Ops with p == 0 are left out of the graph; the rest each run under a `tf.cond` on their coin.
    Height, width and channels must be static (the pipeline sets them).
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        check_augment(cfg)
        self.cfg = cfg
        self.on = {op for op in OPS if getattr(cfg, op).p > 0}
        # Keras's own samplers stay unused: we hand each layer a transformation drawn from our seed.
        self._brightness = keras.layers.RandomBrightness(0.0, value_range=(0.0, 1.0))
        self._contrast = keras.layers.RandomContrast(0.0, value_range=(0.0, 1.0))

    def _coin(self, seed: tf.Tensor, op: str) -> tf.Tensor:
        p = getattr(self.cfg, op).p
        if op not in self.on:
            return tf.constant(False)
        if p >= 1.0:
            return tf.constant(True)
        return _uniform(_op_seed(seed, op, 0), 0.0, 1.0) < p

    def __call__(self, image: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        height, width, channels = image.shape
        if height is None or width is None or channels is None:
            raise FlexsegError(f"augmentation needs images of static shape, got {image.shape}.")
        seed = tf.cast(seed, tf.int64)
        if self.on & set(GEOMETRIC):
            image, labels = self._geometry(image, labels, seed)
        return self._photometry(image, seed), labels

    # ----------------------------------------------------------------------------- geometry

    def _geometry(self, image: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        c = self.cfg
        height, width = image.shape[0], image.shape[1]
        coins = {op: self._coin(seed, op) for op in GEOMETRIC if op in self.on}

        def magnitude(op: str, values: list[float], span: list[float], default: float) -> tf.Tensor:
            if op not in coins:
                return tf.constant(default)
            return tf.where(coins[op], _pick(seed, op, values, span), default)

        transform = distort.compute_affine(
            height, width,
            angle=magnitude("rotation", c.rotation.angles, c.rotation.range, 0.0),
            scale=magnitude("shrink", c.shrink.factors, c.shrink.range, 1.0),
            shear=magnitude("shear", c.shear.factors, c.shear.range, 0.0),
            hflip=coins.get("hflip", tf.constant(False)),
            vflip=coins.get("vflip", tf.constant(False)),
        )
        affine_coins = [coins[op] for op in GEOMETRIC if op in coins and op not in DENSE]
        any_affine = tf.reduce_any(tf.stack(affine_coins)) if affine_coins else tf.constant(False)

        def affine() -> tuple[tf.Tensor, tf.Tensor]:
            return tf.cond(any_affine, lambda: distort.warp_affine(image, labels, transform, c.fill_mode),
                           lambda: (image, labels))

        dense_ops = [op for op in DENSE if op in coins]
        if not dense_ops:
            return affine()
        zeros = tf.zeros((height, width, 2))
        fields = {
            "deformation": lambda: distort.compute_elastic_field(
                _op_seed(seed, "deformation", 1), height, width, c.deformation.alpha, c.deformation.sigma),
            "distortion": lambda: distort.compute_distortion_field(
                _op_seed(seed, "distortion", 3), height, width, c.distortion.gaussian_filter_rsigma,
                _pick(seed, "distortion", c.distortion.distortions, c.distortion.range)),
            "barrdistortion": lambda: self._barrel(seed, "barrdistortion", height, width),
            "pincdistortion": lambda: self._barrel(seed, "pincdistortion", height, width),
        }
        displacement = zeros
        for op in dense_ops:
            displacement += tf.cond(coins[op], fields[op], lambda: zeros)
        any_dense = tf.reduce_any(tf.stack([coins[op] for op in dense_ops]))
        return tf.cond(
            any_dense, lambda: distort.warp_dense(image, labels, transform, displacement, c.fill_mode), affine
        )

    def _barrel(self, seed: tf.Tensor, op: str, height: int, width: int) -> tf.Tensor:
        b: BarrelConfig = getattr(self.cfg, op)
        centers = tf.constant(b.centers, tf.float32)
        i = tf.random.stateless_uniform((), seed=_op_seed(seed, op, 1), maxval=len(b.centers), dtype=tf.int32)
        return distort.compute_barrel_field(height, width, centers[i], b.radius, b.amount)

    # ----------------------------------------------------------------------------- photometry

    def _photometry(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Image-only ops, in this order, each under its own coin."""
        c = self.cfg
        steps: list[tuple[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]] = [
            ("brightening", lambda x, s: tf.clip_by_value(c.brightening.alpha * x + c.brightening.beta / 255, 0, 1)),
            ("brightness", lambda x, s: self._keras(self._brightness, x, "rgb_delta", self._draw(s, "brightness"))),
            ("contrast", lambda x, s: self._keras(self._contrast, x, "contrast_factor", self._draw(s, "contrast"))),
            ("gamma", lambda x, s: tf.pow(tf.clip_by_value(x, 0.0, 1.0), self._draw(s, "gamma"))),
            ("sharpening", lambda x, s: self._sharpen(x)),
            ("blur", lambda x, s: self._blur(x, self._draw(s, "blur"), c.blur.range[1])),
            ("noise", lambda x, s: self._noise(x, s)),
        ]
        if "distortion" in self.on and c.distortion.gaussian_filter_sigma > 0:
            # The blur of `[distortion] gaussian_filter_sigma`, on the images the distortion warped.
            sigma = c.distortion.gaussian_filter_sigma
            steps.insert(0, ("distortion", lambda x, s: self._blur(x, tf.constant(sigma), sigma)))
        for op, fn in steps:
            if op in self.on:
                image = tf.cond(self._coin(seed, op), lambda fn=fn: fn(image, seed), lambda: image)
        return image

    def _draw(self, seed: tf.Tensor, op: str) -> tf.Tensor:
        low, high = getattr(self.cfg, op).range
        return _uniform(_op_seed(seed, op, 1), low, high)

    @staticmethod
    def _keras(layer: keras.layers.Layer, image: tf.Tensor, key: str, value: tf.Tensor) -> tf.Tensor:
        """A Keras preprocessing layer's transform with our draw as its (only) transformation value."""
        return layer.transform_images(image[None], {key: tf.reshape(value, (1, 1, 1, 1))})[0]

    def _noise(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        noise = tf.random.stateless_normal(tf.shape(image), seed=_op_seed(seed, "noise", 2))
        return tf.clip_by_value(image + self._draw(seed, "noise") * noise, 0.0, 1.0)

    def _sharpen(self, image: tf.Tensor) -> tf.Tensor:
        """The reference kernel image + k * (8 * image - sum of the 8 neighbours), borders reflected."""
        k = self.cfg.sharpening.k
        kernel = tf.constant([[-k, -k, -k], [-k, 1 + 8 * k, -k], [-k, -k, -k]], tf.float32)
        kernel = tf.tile(kernel[:, :, None, None], (1, 1, image.shape[-1], 1))
        out = tf.nn.depthwise_conv2d(_reflect_pad(image, 1)[None], kernel, (1, 1, 1, 1), "VALID")[0]
        return tf.clip_by_value(out, 0.0, 1.0)

    @staticmethod
    def _blur(image: tf.Tensor, sigma: tf.Tensor, max_sigma: float) -> tf.Tensor:
        """Gaussian blur (Keras op) of a reflect-padded image: Keras zero-pads, which darkens borders."""
        radius = max(1, int(math.ceil(3.0 * max_sigma)))
        size = 2 * radius + 1
        sigma = tf.maximum(sigma, 1e-3)
        out = keras.ops.image.gaussian_blur(_reflect_pad(image, radius), (size, size), tf.stack([sigma, sigma]))
        return out[radius:-radius, radius:-radius]
