"""Blocks shared by the segmentation models: conv blocks, up blocks, normalisation, name checks.

Functional `apply_*` blocks on tensors with derived layer names (keras-hub style); only built-in
Keras layers, so every model saves as `.keras` and reloads with `safe_mode=True`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from flexseg.config.choices import Normalization

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
        normalization: none | batch | instance | group (groups = min(8, channels)).
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
        return keras.layers.GroupNormalization(groups=min(8, x.shape[-1]), name=name)(x)
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
    x: keras.KerasTensor, skip: keras.KerasTensor, filters: int, kernel: int, dilation: int, dropout: float,
    settings: ConvSettings, name: str,
) -> keras.KerasTensor:
    """Upsample by 2 with a 2x2 transposed conv, concatenate the skip, then a conv block.

    Args:
        x: coarse features, shape (batch, h, w, c).
        skip: encoder features, shape (batch, 2h, 2w, c_skip).
        filters, kernel, dilation, dropout, settings: as in `apply_conv_block`.
        name: prefix of the layer names (``{name}_up``, ``{name}_concat``, ``{name}_conv1``, ...).

    Returns:
        Tensor of shape (batch, 2h, 2w, filters).
    """
    x = keras.layers.Conv2DTranspose(
        filters, 2, strides=2, padding="same", kernel_initializer=settings.kernel_initializer, name=f"{name}_up"
    )(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    return apply_conv_block(x, filters, kernel, dilation, dropout, settings, name)
