"""MultiResUNet (Ibtehaz & Rahman 2020): MultiRes blocks and residual skip paths (ResPaths).

A MultiRes block replaces the UNet's two convs by three chained convs whose outputs (1/6, 1/3 and
1/2 of W = alpha * filters channels) are concatenated, so one block sees 3x3, ~5x5 and ~7x7 context,
plus a 1x1 residual shortcut. A ResPath of length L-1-i (conv units with 1x1 residual shortcuts)
carries level i's features to the decoder, narrowing the encoder-decoder semantic gap. Only
built-in Keras layers: saves as `.keras`, reloads with `safe_mode=True`, any multiple of 2**(L-1).
"""

from __future__ import annotations

import keras

from flexseg.config.models import MultiResUNetConfig
from flexseg.models.blocks import (
    ConvSettings,
    apply_conv_unit,
    apply_normalization,
    apply_segmentation_head,
    apply_unet_stem,
    conv_settings,
)


def compute_multires_widths(filters: int, alpha: float) -> tuple[int, int, int]:
    """Channels of the three chained convs of a MultiRes block: W/6, W/3, W/2 of W = alpha * filters."""
    width = alpha * filters
    return max(1, int(width / 6)), max(1, int(width / 3)), max(1, int(width / 2))


def apply_multires_block(
    x: keras.KerasTensor, filters: int, kernel: int, dilation: int, dropout: float, settings: ConvSettings,
    alpha: float, name: str,
) -> keras.KerasTensor:
    """A MultiRes block.

    Layers: ``{name}_shortcut_conv`` / ``_norm``, ``{name}_c1`` .. ``{name}_c3`` (conv units), ``{name}_chain``,
    ``{name}_chain_norm``, ``{name}_drop`` (dropout > 0), ``{name}_add``, ``{name}_act``, ``{name}_out_norm``.

    Args:
        x: features, shape (batch, h, w, c).
        filters: the level's filters U (the block outputs about alpha * U channels).
        kernel, dilation: of the chained convs.
        dropout: rate after the concatenation; 0 adds no layer.
        settings: normalisation, activation and initializer.
        alpha: the width multiplier.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, h, w, sum(compute_multires_widths(filters, alpha))).
    """
    widths = compute_multires_widths(filters, alpha)
    shortcut = apply_conv_unit(x, sum(widths), 1, settings, name=f"{name}_shortcut", activate=False)
    chain, h = [], x
    for j, width in enumerate(widths, start=1):
        h = apply_conv_unit(h, width, kernel, settings, name=f"{name}_c{j}", dilation=dilation)
        chain.append(h)
    h = keras.layers.Concatenate(name=f"{name}_chain")(chain)
    h = apply_normalization(h, settings.normalization, settings.bn_momentum, name=f"{name}_chain_norm")
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name=f"{name}_drop")(h)
    h = keras.layers.Add(name=f"{name}_add")([shortcut, h])
    h = keras.layers.Activation(settings.activation, name=f"{name}_act")(h)
    return apply_normalization(h, settings.normalization, settings.bn_momentum, name=f"{name}_out_norm")


def apply_res_path(x: keras.KerasTensor, filters: int, length: int, settings: ConvSettings, name: str) -> keras.KerasTensor:
    """A ResPath: `length` times a 3x3 conv unit plus a 1x1 residual shortcut.

    Layers per step k: ``{name}{k}_shortcut_*``, ``{name}{k}_conv_*``, ``{name}{k}_add``, ``{name}{k}_act``,
    ``{name}{k}_out_norm``.

    Returns:
        Tensor of shape (batch, h, w, filters).
    """
    for k in range(length):
        shortcut = apply_conv_unit(x, filters, 1, settings, name=f"{name}{k}_shortcut", activate=False)
        h = apply_conv_unit(x, filters, 3, settings, name=f"{name}{k}_conv")
        x = keras.layers.Add(name=f"{name}{k}_add")([shortcut, h])
        x = keras.layers.Activation(settings.activation, name=f"{name}{k}_act")(x)
        x = apply_normalization(x, settings.normalization, settings.bn_momentum, name=f"{name}{k}_out_norm")
    return x


def build_multires_unet(cfg: MultiResUNetConfig) -> keras.Model:
    """Build a MultiResUNet.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters (U of level 0, doubling per
            level), base_kernels and dilation (of the chained convs), num_layers, dropout_rate,
            normalization, activation, kernel_initializer, input_normalize and alpha.

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    levels = [
        dict(filters=cfg.base_filters * 2**i, kernel=cfg.base_kernels, dilation=cfg.dilation,
             dropout=cfg.dropout_rate * i, settings=settings, alpha=cfg.alpha)
        for i in range(cfg.num_layers)
    ]
    inputs, x, skips = apply_unet_stem(cfg, levels, block=apply_multires_block)
    for i in range(cfg.num_layers - 2, -1, -1):
        filters = levels[i]["filters"]
        skip = apply_res_path(skips[i], filters, cfg.num_layers - 1 - i, settings, name=f"respath{i}_")
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                         kernel_initializer=cfg.kernel_initializer, name=f"dec{i}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{i}_concat")([x, skip])
        x = apply_multires_block(x, **levels[i], name=f"dec{i}")
    outputs = apply_segmentation_head(x, cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="multires_unet")
