"""FlexUNet: the reference UNet whose kernel size and dilation shrink with depth.

Level ``i`` of ``L = num_layers`` levels has ``base_filters * 2**i`` filters, kernel size
``max(3, base_kernels - 2*i)`` and dilation ``max(1, dilation - i)``; the decoder reuses the
settings of the encoder level it mirrors. Every convolution starts from ``kernel_initializer``
(``he_normal`` by default, as the reference: Keras's glorot default shrinks the activations of a
deep ReLU stack level by level). Only built-in Keras layers are used, so a model saves as
``.keras`` and reloads with ``keras.models.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

import keras

from flexseg.config.choices import Normalization
from flexseg.config.schemas import ModelConfig

# `glu` halves the channel count, so it cannot sit between two convs of a fixed width.
_NOT_HIDDEN_ACTIVATIONS = frozenset({"get", "serialize", "deserialize", "glu"})
ACTIVATIONS: tuple[str, ...] = tuple(
    sorted(n for n in dir(keras.activations) if not n.startswith("_") and n not in _NOT_HIDDEN_ACTIVATIONS)
)


def compute_level_kernel(base_kernels: int, level: int) -> int:
    """Kernel size of encoder/decoder level `level`: shrinks by 2 per level, at least 3."""
    return max(3, base_kernels - 2 * level)


def compute_level_dilation(dilation: int, level: int) -> int:
    """Dilation rate of level `level`: shrinks by 1 per level, at least 1."""
    return max(1, dilation - level)


def _check_activation(activation: str) -> None:
    """Raise ValueError listing the valid names when `activation` is not one of them."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation='{activation}' is unknown; use one of {', '.join(ACTIVATIONS)}.")


def _check_initializer(name: str) -> None:
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


def apply_conv_block(
    x: keras.KerasTensor,
    filters: int,
    kernel: int,
    dilation: int,
    dropout: float,
    normalization: Normalization | str,
    bn_momentum: float,
    activation: str,
    name: str,
    kernel_initializer: str = "he_normal",
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
        normalization: none | batch | instance | group.
        bn_momentum: BatchNormalization momentum.
        activation: Keras activation name.
        name: prefix of the layer names.
        kernel_initializer: Keras initializer name of both convolutions.

    Returns:
        Tensor of shape (batch, height, width, filters).
    """
    for j in (1, 2):
        if j == 2 and dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_drop")(x)
        x = keras.layers.Conv2D(
            filters, kernel, padding="same", dilation_rate=dilation, kernel_initializer=kernel_initializer,
            name=f"{name}_conv{j}",
        )(x)
        x = apply_normalization(x, normalization, bn_momentum, name=f"{name}_norm{j}")
        x = keras.layers.Activation(activation, name=f"{name}_act{j}")(x)
    return x


def apply_up_block(
    x: keras.KerasTensor,
    skip: keras.KerasTensor,
    filters: int,
    kernel: int,
    dilation: int,
    dropout: float,
    normalization: Normalization | str,
    bn_momentum: float,
    activation: str,
    name: str,
    kernel_initializer: str = "he_normal",
) -> keras.KerasTensor:
    """Upsample by 2 with a 2x2 transposed conv, concatenate the skip, then a conv block.

    Args:
        x: coarse features, shape (batch, h, w, c).
        skip: encoder features, shape (batch, 2h, 2w, c_skip).
        filters, kernel, dilation, dropout, normalization, bn_momentum, activation,
            kernel_initializer: as in `apply_conv_block`, taken from the mirrored encoder level.
        name: prefix of the layer names (``{name}_up``, ``{name}_concat``, ``{name}_conv1``, ...).

    Returns:
        Tensor of shape (batch, 2h, 2w, filters).
    """
    x = keras.layers.Conv2DTranspose(
        filters, 2, strides=2, padding="same", kernel_initializer=kernel_initializer, name=f"{name}_up"
    )(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    return apply_conv_block(
        x, filters, kernel, dilation, dropout, normalization, bn_momentum, activation, name, kernel_initializer
    )


def build_flexunet(cfg: ModelConfig) -> keras.Model:
    """Build the FlexUNet described by `cfg`.

    Args:
        cfg: validated model config; `num_classes` must be an int.

    Returns:
        A functional model mapping float images in [0, 1], shape
        (batch, image_height, image_width, image_channels), to float32 class probabilities of
        shape (batch, image_height, image_width, num_classes): softmax over classes, or a
        sigmoid foreground probability when num_classes is 1.

    Raises:
        ValueError: on an unknown activation, normalization or kernel initializer, or a missing
            num_classes.
    """
    _check_activation(cfg.activation)
    _check_initializer(cfg.kernel_initializer)
    if not isinstance(cfg.num_classes, int) or cfg.num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {cfg.num_classes!r}.")
    levels = [
        dict(
            filters=cfg.base_filters * 2**i,
            kernel=compute_level_kernel(cfg.base_kernels, i),
            dilation=compute_level_dilation(cfg.dilation, i),
            dropout=cfg.dropout_rate * i,
            normalization=cfg.normalization,
            bn_momentum=cfg.bn_momentum,
            activation=cfg.activation,
            kernel_initializer=cfg.kernel_initializer,
        )
        for i in range(cfg.num_layers)
    ]
    inputs = keras.Input((cfg.image_height, cfg.image_width, cfg.image_channels), name="image")
    x = inputs
    if cfg.input_normalize:
        # epsilon 1e-6 (std floor ~1e-3, as tf.image.per_image_standardization at 512x512x3): the
        # default 1e-3 would leave a low-contrast channel (std 0.05 in [0, 1]) at std ~0.85, not 1.
        x = keras.layers.LayerNormalization(
            axis=(1, 2), epsilon=1e-6, center=False, scale=False, name="input_norm"
        )(x)
    skips = []
    for i, level in enumerate(levels):
        x = apply_conv_block(x, **level, name=f"enc{i}")
        if i < cfg.num_layers - 1:
            skips.append(x)
            x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    for i in range(cfg.num_layers - 2, -1, -1):
        x = apply_up_block(x, skips[i], **levels[i], name=f"dec{i}")
    x = keras.layers.Conv2D(cfg.num_classes, 1, kernel_initializer=cfg.kernel_initializer, name="head_conv")(x)
    out_activation = "sigmoid" if cfg.num_classes == 1 else "softmax"
    outputs = keras.layers.Activation(out_activation, dtype="float32", name="head_act")(x)
    return keras.Model(inputs, outputs, name="flexunet")
