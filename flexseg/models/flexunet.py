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
from flexseg.models.blocks import (
    apply_segmentation_head,
    apply_unet_decoder,
    apply_unet_stem,
    conv_settings,
)


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
    settings = conv_settings(cfg)
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
    inputs, x, skips = apply_unet_stem(cfg, levels)
    x = apply_unet_decoder(x, skips, levels)
    outputs = apply_segmentation_head(x, cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="flexunet")
