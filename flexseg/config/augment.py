"""Schemas of the `augment` group: one dataclass per online augmentation op, and `AugmentConfig`.

Imported by `flexseg.config.schemas` (the root `Config`); no TensorFlow or MLflow import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from flexseg.config.choices import FillMode


@dataclass
class FlipConfig:
    """Mirror image and mask (reference `hflip` / `vflip`)."""

    p: float = 0.0


@dataclass
class RotationConfig:
    """Rotate about the centre by `choice(angles) + uniform(range)` degrees, counter-clockwise.

    An empty `angles` counts as [0], an empty `range` as no jitter (reference `angles`).
    """

    p: float = 0.0
    angles: List[float] = field(default_factory=list)
    range: List[float] = field(default_factory=lambda: [-180.0, 180.0])


@dataclass
class FactorConfig:
    """A factor drawn as `choice(factors) + uniform(range)` (an empty list counts as [0]).

    `shrink`: content scale about the centre, < 1 zooms out (reference `shrinks`), > 1 zooms in.
    `shear`: vertical shear about the centre, y += factor * (x - centre) (reference `shears`).
    """

    p: float = 0.0
    factors: List[float] = field(default_factory=list)
    range: List[float] = field(default_factory=list)


@dataclass
class ElasticConfig:
    """Elastic deformation (Simard 2003): displacement = alpha * gaussian_sigma(uniform(-1, 1)) pixels.

    The reference's `alpah = 1300, sigmoids = [8]` filter a 3-channel noise volume in 3-D, which
    shrinks the field ~12x: they move pixels as much as alpha 110, sigma 8 does here.
    """

    p: float = 0.0
    alpha: float = 110.0
    sigma: float = 8.0


@dataclass
class DistortionConfig:
    """Smooth random distortion (reference `[distortion]`): the gradient of gaussian-smoothed noise.

    `gaussian_filter_rsigma` is the smoothing in pixels; the peak displacement is
    `choice(distortions) + uniform(range)` times max(H, W); `gaussian_filter_sigma` blurs the
    distorted image (0: off).
    """

    p: float = 0.0
    gaussian_filter_rsigma: float = 40.0
    gaussian_filter_sigma: float = 0.5
    distortions: List[float] = field(default_factory=lambda: [0.02])
    range: List[float] = field(default_factory=list)


@dataclass
class BarrelConfig:
    """Barrel (amount > 0) or pincushion (amount < 0) distortion around one of `centers`.

    Inside `radius` * width of the centre, a pixel at distance d samples the source at
    d * sin(pi * d / (2 * radius))**amount (reference `[barrdistortion]` / `[pincdistortion]`);
    `centers` are (x, y) fractions of the width and height, one picked at random per image.
    """

    p: float = 0.0
    radius: float = 0.3
    amount: float = 0.3
    centers: List[List[float]] = field(default_factory=lambda: [[0.5, 0.5]])


@dataclass
class SharpenConfig:
    """Reference `[sharpening]`: 3x3 kernel [[-k]*3, [-k, 1 + 8k, -k], [-k]*3] (image only)."""

    p: float = 0.0
    k: float = 1.0


@dataclass
class BrightenConfig:
    """Reference `[brightening]`: alpha * image + beta, beta on the 0..255 scale (image only)."""

    p: float = 0.0
    alpha: float = 1.2
    beta: float = 10.0


@dataclass
class JitterConfig:
    """A photometric jitter (image only) with its magnitude drawn uniformly from `range`."""

    p: float = 0.0
    range: List[float] = field(default_factory=list)


@dataclass
class AugmentConfig:
    """Online augmentation: each op runs with probability `p`, magnitudes drawn per image, seeded.

    Geometric ops move image and mask together (mask: nearest neighbour, no new label values);
    `fill_mode` fills what comes from outside the image: constant (image 0, mask background) or
    reflect (image and mask mirrored alike). Photometric ops touch the image only.
    """

    name: str = "none"
    fill_mode: FillMode = FillMode.constant
    hflip: FlipConfig = field(default_factory=FlipConfig)
    vflip: FlipConfig = field(default_factory=FlipConfig)
    rotation: RotationConfig = field(default_factory=RotationConfig)
    shrink: FactorConfig = field(default_factory=lambda: FactorConfig(range=[0.8, 1.2]))
    shear: FactorConfig = field(default_factory=lambda: FactorConfig(range=[-0.1, 0.1]))
    deformation: ElasticConfig = field(default_factory=ElasticConfig)
    distortion: DistortionConfig = field(default_factory=DistortionConfig)
    barrdistortion: BarrelConfig = field(default_factory=BarrelConfig)
    pincdistortion: BarrelConfig = field(default_factory=lambda: BarrelConfig(radius=0.5, amount=-0.5))
    sharpening: SharpenConfig = field(default_factory=SharpenConfig)
    brightening: BrightenConfig = field(default_factory=BrightenConfig)
    # Additive delta (fraction of the 0..1 range), contrast factor about the mean, exponent,
    # noise standard deviation, gaussian blur sigma in pixels.
    brightness: JitterConfig = field(default_factory=lambda: JitterConfig(range=[-0.1, 0.1]))
    contrast: JitterConfig = field(default_factory=lambda: JitterConfig(range=[0.75, 1.25]))
    gamma: JitterConfig = field(default_factory=lambda: JitterConfig(range=[0.7, 1.5]))
    noise: JitterConfig = field(default_factory=lambda: JitterConfig(range=[0.0, 0.05]))
    blur: JitterConfig = field(default_factory=lambda: JitterConfig(range=[0.5, 1.0]))
