"""Blocks shared by the segmentation models: conv blocks, up blocks, normalisation, name checks.

Functional `apply_*` blocks on tensors with derived layer names (keras-hub style); only built-in
Keras layers, so every model saves as `.keras` and reloads with `safe_mode=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import keras

from flexseg.config.choices import Normalization
from flexseg.config.schemas import ModelConfig

# `glu` halves the channel count, so it cannot sit between two convs of a fixed width.
_NOT_HIDDEN_ACTIVATIONS = frozenset({"get", "serialize", "deserialize", "glu"})
ACTIVATIONS: tuple[str, ...] = tuple(
    sorted(n for n in dir(keras.activations) if not n.startswith("_") and n not in _NOT_HIDDEN_ACTIVATIONS)
)


def check_activation(activation: str) -> None:
    """Raise ValueError listing the valid names when `activation` is not one of them."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation='{activation}' is unknown; use one of {', '.join(ACTIVATIONS)}.")


def check_initializer(name: str) -> None:
    """Raise ValueError naming `kernel_initializer` when Keras has no initializer of that name."""
    try:
        keras.initializers.get(name)
    except ValueError:
        raise ValueError(
            f"kernel_initializer='{name}' is unknown; use a Keras initializer name such as he_normal, "
            "he_uniform, glorot_uniform or lecun_normal."
        ) from None


def apply_normalization(
    x: keras.KerasTensor, normalization: Normalization | str, bn_momentum: float, name: str
) -> keras.KerasTensor:
    """Normalise a feature map, or pass it through for ``none``.

    Args:
        x: features, shape (batch, height, width, channels).
        normalization: none | batch | instance | group (8 groups, or the largest divisor of the
            channel count below 8: gcd(8, channels)).
        bn_momentum: moving-average momentum of BatchNormalization.
        name: layer name.

    Returns:
        Tensor of the same shape as `x`.

    Raises:
        ValueError: `normalization` is not a `Normalization` value.
    """
    normalization = Normalization(normalization)
    if normalization == Normalization.batch:
        return keras.layers.BatchNormalization(momentum=bn_momentum, name=name)(x)
    if normalization == Normalization.instance:
        return keras.layers.GroupNormalization(groups=-1, name=name)(x)
    if normalization == Normalization.group:
        return keras.layers.GroupNormalization(groups=math.gcd(8, int(x.shape[-1])), name=name)(x)
    return x


@dataclass(frozen=True)
class ConvSettings:
    """How every convolution block of a model is built (the `model.*` keys of the same names).

    Attributes:
        normalization: none | batch | instance | group, after each convolution.
        bn_momentum: BatchNormalization moving-average momentum.
        activation: Keras activation name, after each normalisation.
        kernel_initializer: Keras initializer name of every convolution.
    """

    normalization: Normalization | str = Normalization.none
    bn_momentum: float = 0.99
    activation: str = "relu"
    kernel_initializer: str = "he_normal"

    def check(self) -> None:
        """Raise ValueError listing the valid names for an unknown activation or initializer."""
        check_activation(self.activation)
        check_initializer(self.kernel_initializer)


def apply_conv_block(
    x: keras.KerasTensor, filters: int, kernel: int, dilation: int, dropout: float, settings: ConvSettings, name: str
) -> keras.KerasTensor:
    """Two 'same' convolutions, each followed by normalisation and activation, dropout between.

    Layers are named ``{name}_conv1``, ``{name}_norm1``, ``{name}_act1``, ``{name}_drop``,
    ``{name}_conv2``, ``{name}_norm2``, ``{name}_act2`` (norm and drop only when used).

    Args:
        x: input features, shape (batch, height, width, channels_in).
        filters: output channels of both convolutions.
        kernel: square kernel size.
        dilation: dilation rate of both convolutions.
        dropout: dropout rate between the convolutions; 0 adds no layer.
        settings: normalisation, activation and initializer.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, height, width, filters).
    """
    for j in (1, 2):
        if j == 2 and dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_drop")(x)
        x = keras.layers.Conv2D(
            filters, kernel, padding="same", dilation_rate=dilation, kernel_initializer=settings.kernel_initializer,
            name=f"{name}_conv{j}",
        )(x)
        x = apply_normalization(x, settings.normalization, settings.bn_momentum, name=f"{name}_norm{j}")
        x = keras.layers.Activation(settings.activation, name=f"{name}_act{j}")(x)
    return x


def apply_up_block(
    x: keras.KerasTensor, skip: keras.KerasTensor | None, filters: int, kernel: int, dilation: int, dropout: float,
    settings: ConvSettings, name: str,
) -> keras.KerasTensor:
    """Upsample by 2 with a 2x2 transposed conv, concatenate the skip, then a conv block.

    Args:
        x: coarse features, shape (batch, h, w, c).
        skip: encoder features, shape (batch, 2h, 2w, c_skip); None: no concatenation.
        filters, kernel, dilation, dropout, settings: as in `apply_conv_block`.
        name: prefix of the layer names (``{name}_up``, ``{name}_concat``, ``{name}_conv1``, ...).

    Returns:
        Tensor of shape (batch, 2h, 2w, filters).
    """
    x = keras.layers.Conv2DTranspose(
        filters, 2, strides=2, padding="same", kernel_initializer=settings.kernel_initializer, name=f"{name}_up"
    )(x)
    if skip is not None:
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    return apply_conv_block(x, filters, kernel, dilation, dropout, settings, name)


def conv_settings(cfg: ModelConfig) -> ConvSettings:
    """The checked `ConvSettings` of a model config; also checks `num_classes`.

    Raises:
        ValueError: an unknown activation or initializer, or `num_classes` not a positive int.
    """
    settings = ConvSettings(cfg.normalization, cfg.bn_momentum, cfg.activation, cfg.kernel_initializer)
    settings.check()
    if not isinstance(cfg.num_classes, int) or cfg.num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {cfg.num_classes!r}.")
    return settings


def apply_conv_unit(
    x: keras.KerasTensor, filters: int, kernel: int, settings: ConvSettings, name: str, dilation: int = 1,
    strides: int = 1, activate: bool = True,
) -> keras.KerasTensor:
    """One 'same' convolution, then normalisation and (when `activate`) activation.

    Layers: ``{name}_conv``, ``{name}_norm`` (unless normalization is none), ``{name}_act``.

    Args:
        x: features, shape (batch, h, w, c).
        filters, kernel, dilation, strides: of the convolution (dilation > 1 needs strides 1).
        settings: normalisation, activation and initializer.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, h / strides, w / strides, filters).
    """
    x = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", dilation_rate=dilation,
        kernel_initializer=settings.kernel_initializer, name=f"{name}_conv",
    )(x)
    x = apply_normalization(x, settings.normalization, settings.bn_momentum, name=f"{name}_norm")
    return keras.layers.Activation(settings.activation, name=f"{name}_act")(x) if activate else x


def apply_input_normalization(x: keras.KerasTensor, enabled: bool) -> keras.KerasTensor:
    """`model.input_normalize`: standardise each image per channel (layer ``input_norm``), or pass through.

    epsilon 1e-6 (std floor ~1e-3, as tf.image.per_image_standardization at 512x512x3): the default
    1e-3 would leave a low-contrast channel (std 0.05 in [0, 1]) at std ~0.85, not 1.
    """
    if not enabled:
        return x
    return keras.layers.LayerNormalization(axis=(1, 2), epsilon=1e-6, center=False, scale=False, name="input_norm")(x)


def apply_unet_encoder(
    x: keras.KerasTensor, levels: list[dict], block: Callable[..., keras.KerasTensor] = apply_conv_block
) -> tuple[keras.KerasTensor, list[keras.KerasTensor]]:
    """A UNet encoder: `block` at each level (``enc{i}``), 2x2 max pooling (``enc{i}_pool``) between levels.

    Args:
        x: images or features, shape (batch, H, W, c).
        levels: keyword arguments of `block` per level, shallowest first.
        block: the level block, called as ``block(x, **level, name=f"enc{i}")``.

    Returns:
        (bottleneck features of shape (batch, H / 2**(L-1), W / 2**(L-1), c_L), the L-1 skip tensors,
        shallowest first).
    """
    skips = []
    for i, level in enumerate(levels):
        x = block(x, **level, name=f"enc{i}")
        if i < len(levels) - 1:
            skips.append(x)
            x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    return x, skips


def apply_unet_stem(
    cfg: ModelConfig, levels: list[dict], block: Callable[..., keras.KerasTensor] = apply_conv_block
) -> tuple[keras.KerasTensor, keras.KerasTensor, list[keras.KerasTensor]]:
    """The image input (``image``), `model.input_normalize`, then `apply_unet_encoder` with `block`.

    Returns:
        (the model input of shape (batch, H, W, C), the bottleneck features, the skips shallowest first).
    """
    inputs = keras.Input((cfg.image_height, cfg.image_width, cfg.image_channels), name="image")
    x, skips = apply_unet_encoder(apply_input_normalization(inputs, cfg.input_normalize), levels, block)
    return inputs, x, skips


def apply_unet_decoder(
    x: keras.KerasTensor, skips: list[keras.KerasTensor], levels: list[dict],
    gate: Callable[[keras.KerasTensor, keras.KerasTensor, int], keras.KerasTensor] | None = None,
) -> keras.KerasTensor:
    """UNet decoder: `apply_up_block` from the deepest skip up (``dec{i}``), each skip first passed
    through ``gate(skip, x, i)`` when given (attention gates, sharpening).

    Returns:
        Features at the resolution of ``skips[0]`` with ``levels[0]["filters"]`` channels.
    """
    for i in range(len(skips) - 1, -1, -1):
        skip = skips[i] if gate is None else gate(skips[i], x, i)
        x = apply_up_block(x, skip, **levels[i], name=f"dec{i}")
    return x


def apply_segmentation_head(
    x: keras.KerasTensor, num_classes: int, kernel_initializer: str, upsample: int = 1
) -> keras.KerasTensor:
    """1x1 conv to class logits (``head_conv``), optional bilinear upsampling (``head_up``), then the
    float32 softmax, or sigmoid for one class (``head_act``: float32 under mixed precision too).

    Returns:
        Probabilities of shape (batch, h * upsample, w * upsample, num_classes), float32.
    """
    x = keras.layers.Conv2D(num_classes, 1, kernel_initializer=kernel_initializer, name="head_conv")(x)
    if upsample > 1:
        x = keras.layers.UpSampling2D(upsample, interpolation="bilinear", name="head_up")(x)
    out_activation = "sigmoid" if num_classes == 1 else "softmax"
    return keras.layers.Activation(out_activation, dtype="float32", name="head_act")(x)


def unet_levels(cfg: ModelConfig, settings: ConvSettings) -> list[dict]:
    """`apply_conv_block` arguments of each of `num_layers` levels: base_filters * 2**i filters,
    base_kernels, dilation, dropout_rate * i (the FlexUNet schedule without its shrinking kernels)."""
    return [
        dict(filters=cfg.base_filters * 2**i, kernel=cfg.base_kernels, dilation=cfg.dilation,
             dropout=cfg.dropout_rate * i, settings=settings)
        for i in range(cfg.num_layers)
    ]
