"""U^2-Net (Qin et al. 2020): a UNet of residual U-blocks (RSU), side outputs fused by a 1x1 conv.

An RSU-h is a small UNet of height h inside one block (h-2 poolings, a dilated bottom conv) whose
output is added to its input conv's: every stage sees multi-scale context at its own resolution.
The deepest `dilated_stages` stages are RSU-4F blocks (dilations 1, 2, 4, 8 instead of pooling). Each
decoder stage and the bottleneck give a side output (a 3x3 conv to class logits, bilinearly upsampled to
full size); the head fuses them with a 1x1 conv (the paper's fused output; its deep-supervision losses
on the side outputs are left out). Only built-in Keras layers: saves as `.keras`, reloads with
`safe_mode=True`, takes any multiple of `U2NetConfig.size_multiple`.
"""

from __future__ import annotations

import keras

from flexseg.config.models import U2NetConfig
from flexseg.models.blocks import (
    ConvSettings,
    apply_conv_unit,
    apply_input_normalization,
    apply_segmentation_head,
    conv_settings,
)


def apply_rsu(
    x: keras.KerasTensor, height: int, mid: int, out: int, kernel: int, dropout: float, settings: ConvSettings,
    name: str,
) -> keras.KerasTensor:
    """A residual U-block RSU-`height` (h-2 poolings), or RSU-4F for `height` 0 (dilations, no pooling).

    Layers: ``{name}_in_*``, ``{name}_enc{k}_*``, ``{name}_pool{k}``, ``{name}_drop``, ``{name}_bottom_*``,
    ``{name}_dec{k}_*``, ``{name}_concat{k}``, ``{name}_up{k}``, ``{name}_add``.

    Args:
        x: features, shape (batch, h, w, c).
        height: RSU height (>= 3), or 0 for RSU-4F.
        mid: channels inside the block.
        out: channels of the block's input conv and output.
        kernel: kernel size of every conv.
        dropout: rate before the bottom conv; 0 adds no layer.
        settings: normalisation, activation and initializer.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, h, w, out).
    """
    dilated = height == 0
    levels = 3 if dilated else height - 1  # encoder convs above the bottom
    hx_in = apply_conv_unit(x, out, kernel, settings, name=f"{name}_in")
    encoder, h = [], hx_in
    for k in range(1, levels + 1):
        if k > 1 and not dilated:
            h = keras.layers.MaxPooling2D(2, name=f"{name}_pool{k - 1}")(h)
        h = apply_conv_unit(h, mid, kernel, settings, name=f"{name}_enc{k}", dilation=2 ** (k - 1) if dilated else 1)
        encoder.append(h)
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name=f"{name}_drop")(h)
    h = apply_conv_unit(h, mid, kernel, settings, name=f"{name}_bottom", dilation=2**levels if dilated else 2)
    for k in range(levels, 0, -1):
        h = keras.layers.Concatenate(name=f"{name}_concat{k}")([h, encoder[k - 1]])
        h = apply_conv_unit(h, out if k == 1 else mid, kernel, settings, name=f"{name}_dec{k}",
                            dilation=2 ** (k - 1) if dilated else 1)
        if k > 1 and not dilated:
            h = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{k}")(h)
    return keras.layers.Add(name=f"{name}_add")([h, hx_in])


def build_u2net(cfg: U2NetConfig) -> keras.Model:
    """Build a U^2-Net.

    Args:
        cfg: validated config; `num_classes` an int. Uses num_layers (stages), base_filters (stage
            output channels, x2 per stage up to x8), mid_filters, rsu_height, dilated_stages,
            base_kernels, dropout_rate (x stage index, before each RSU's bottom conv), normalization,
            activation, kernel_initializer and input_normalize (`dilation` is not used).

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    heights = cfg.rsu_heights()
    stages = [
        dict(height=h, mid=cfg.mid_filters * 2 ** min(i, 3), out=cfg.base_filters * 2 ** min(i, 3),
             kernel=cfg.base_kernels, dropout=cfg.dropout_rate * i, settings=settings)
        for i, h in enumerate(heights)
    ]
    inputs = keras.Input((cfg.image_height, cfg.image_width, cfg.image_channels), name="image")
    x = apply_input_normalization(inputs, cfg.input_normalize)
    encoder = []
    for i, stage in enumerate(stages):
        if i > 0:
            x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        x = apply_rsu(x, **stage, name=f"enc{i}")
        encoder.append(x)
    last = len(stages) - 1
    decoded = {last: x}
    for i in range(last - 1, -1, -1):
        up = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(decoded[i + 1])
        x = keras.layers.Concatenate(name=f"dec{i}_concat")([up, encoder[i]])
        decoded[i] = apply_rsu(x, **stages[i], name=f"dec{i}")
    sides = []
    for i in range(last + 1):
        side = keras.layers.Conv2D(cfg.num_classes, 3, padding="same", kernel_initializer=cfg.kernel_initializer,
                                   name=f"side{i}_conv")(decoded[i])
        if i > 0:
            side = keras.layers.UpSampling2D(2**i, interpolation="bilinear", name=f"side{i}_up")(side)
        sides.append(side)
    fused = keras.layers.Concatenate(name="side_concat")(sides)
    outputs = apply_segmentation_head(fused, cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="u2net")
