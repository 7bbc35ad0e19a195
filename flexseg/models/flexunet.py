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

from flexseg.config.schemas import ModelConfig
from flexseg.models.blocks import ConvSettings, apply_conv_block, apply_up_block


def compute_level_kernel(base_kernels: int, level: int) -> int:
    """Kernel size of encoder/decoder level `level`: shrinks by 2 per level, at least 3."""
    return max(3, base_kernels - 2 * level)


def compute_level_dilation(dilation: int, level: int) -> int:
    """Dilation rate of level `level`: shrinks by 1 per level, at least 1."""
    return max(1, dilation - level)


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
    settings = ConvSettings(cfg.normalization, cfg.bn_momentum, cfg.activation, cfg.kernel_initializer)
    settings.check()
    if not isinstance(cfg.num_classes, int) or cfg.num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {cfg.num_classes!r}.")
    levels = [
        dict(
            filters=cfg.base_filters * 2**i,
            kernel=compute_level_kernel(cfg.base_kernels, i),
            dilation=compute_level_dilation(cfg.dilation, i),
            dropout=cfg.dropout_rate * i,
            settings=settings,
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
