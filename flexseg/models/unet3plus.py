"""UNet 3+ (Huang et al. 2020): full-scale skip connections, every decoder node sees every scale.

Decoder node i (of levels 0..L-2) concatenates, each brought to its resolution and projected by a
conv unit to `skip_filters` channels: the finer encoder levels j < i (max-pooled by 2**(i-j)), the
encoder level i itself, and the coarser decoder nodes j > i (the bottleneck for j = L-1; bilinearly
upsampled by 2**(j-i)); a conv unit fuses the L * skip_filters channels. Deep supervision and the
classification-guided module of the paper are left out (one output, as every flexseg model).
Only built-in Keras layers: saves as `.keras`, reloads with `safe_mode=True`, any multiple of 2**(L-1).
"""

from __future__ import annotations

import keras

from flexseg.config.models import UNet3PlusConfig
from flexseg.models.blocks import (
    ConvSettings,
    apply_conv_unit,
    apply_segmentation_head,
    apply_unet_stem,
    conv_settings,
    unet_levels,
)


def apply_full_scale_node(
    encoder: list[keras.KerasTensor], decoder: dict[int, keras.KerasTensor], level: int, filters: int, kernel: int,
    settings: ConvSettings, name: str,
) -> keras.KerasTensor:
    """One UNet 3+ decoder node at `level`.

    Layers: ``{name}_from_enc{j}_pool`` / ``{name}_from_dec{j}_up`` (resampling), ``{name}_from_enc{j}`` /
    ``{name}_from_dec{j}`` (conv units), ``{name}_concat``, ``{name}_fuse`` (conv unit).

    Args:
        encoder: encoder features per level, level j of shape (batch, H / 2**j, W / 2**j, c_j).
        decoder: decoder features of the coarser levels (the bottleneck included), by level.
        level: i, the level this node sits at.
        filters: channels each scale contributes (skip_filters).
        kernel: kernel size of the conv units.
        settings: normalisation, activation and initializer.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, H / 2**i, W / 2**i, len(encoder) * filters).
    """
    parts = []
    for j in range(level + 1):
        x = encoder[j]
        if j < level:
            x = keras.layers.MaxPooling2D(2 ** (level - j), name=f"{name}_from_enc{j}_pool")(x)
        parts.append(apply_conv_unit(x, filters, kernel, settings, name=f"{name}_from_enc{j}"))
    for j in sorted(decoder):
        x = keras.layers.UpSampling2D(2 ** (j - level), interpolation="bilinear", name=f"{name}_from_dec{j}_up")(
            decoder[j])
        parts.append(apply_conv_unit(x, filters, kernel, settings, name=f"{name}_from_dec{j}"))
    x = keras.layers.Concatenate(name=f"{name}_concat")(parts)
    return apply_conv_unit(x, filters * len(parts), kernel, settings, name=f"{name}_fuse")


def build_unet3plus(cfg: UNet3PlusConfig) -> keras.Model:
    """Build a UNet 3+.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters, base_kernels, num_layers,
            dilation (encoder), dropout_rate (encoder), normalization, activation, kernel_initializer,
            input_normalize and skip_filters (None: base_filters).

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    levels = unet_levels(cfg, settings)
    filters = cfg.skip_filters or cfg.base_filters
    inputs, bottom, skips = apply_unet_stem(cfg, levels)
    last = cfg.num_layers - 1
    decoder = {last: bottom}
    for i in range(last - 1, -1, -1):
        decoder[i] = apply_full_scale_node(skips, {j: decoder[j] for j in range(i + 1, last + 1)}, i, filters,
                                           cfg.base_kernels, settings, name=f"dec{i}")
    outputs = apply_segmentation_head(decoder[0], cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="unet3plus")
