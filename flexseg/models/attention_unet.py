"""Attention U-Net (Oktay et al. 2018): a UNet whose skip features pass through additive attention gates.

Each decoder level gates its skip with the coarser decoder features before concatenating them: the
gate learns where in the skip the foreground is, from context the skip alone lacks. Levels follow
the zoo's UNet schedule (`blocks.unet_levels`); only built-in Keras layers, so the model saves as
`.keras`, reloads with `safe_mode=True` and takes any input size that is a multiple of 2**(L-1).
"""

from __future__ import annotations

import keras

from flexseg.config.models import AttentionUNetConfig
from flexseg.models.blocks import (
    ConvSettings,
    apply_segmentation_head,
    apply_unet_decoder,
    apply_unet_stem,
    conv_settings,
    unet_levels,
)


def apply_attention_gate(
    skip: keras.KerasTensor, gate: keras.KerasTensor, inner_filters: int, settings: ConvSettings, name: str
) -> keras.KerasTensor:
    """Additive attention gate: weight each skip pixel by a sigmoid attention computed with the gate signal.

    alpha = sigmoid(psi(relu(theta(skip) + phi(gate)))), upsampled to the skip's size; the skip is
    multiplied by alpha. Layers: ``{name}_theta`` (2x2 stride 2), ``{name}_phi``, ``{name}_add``,
    ``{name}_relu``, ``{name}_psi``, ``{name}_sigmoid``, ``{name}_up``, ``{name}_mul``.

    Args:
        skip: encoder features, shape (batch, 2h, 2w, c_skip).
        gate: coarser decoder features, shape (batch, h, w, c_gate).
        inner_filters: channels of the attention's hidden features.
        settings: supplies the kernel initializer.
        name: prefix of the layer names.

    Returns:
        The gated skip, shape (batch, 2h, 2w, c_skip).
    """
    init = settings.kernel_initializer
    theta = keras.layers.Conv2D(inner_filters, 2, strides=2, use_bias=False, kernel_initializer=init,
                                name=f"{name}_theta")(skip)
    phi = keras.layers.Conv2D(inner_filters, 1, kernel_initializer=init, name=f"{name}_phi")(gate)
    f = keras.layers.Add(name=f"{name}_add")([theta, phi])
    f = keras.layers.Activation("relu", name=f"{name}_relu")(f)
    psi = keras.layers.Conv2D(1, 1, kernel_initializer="glorot_uniform", name=f"{name}_psi")(f)
    alpha = keras.layers.Activation("sigmoid", name=f"{name}_sigmoid")(psi)
    alpha = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(alpha)
    return keras.layers.Multiply(name=f"{name}_mul")([skip, alpha])  # (.., 1) broadcasts over the channels


def build_attention_unet(cfg: AttentionUNetConfig) -> keras.Model:
    """Build an Attention U-Net.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters, base_kernels, num_layers,
            dilation, dropout_rate, normalization, activation, kernel_initializer, input_normalize and
            gate_reduction (gate channels = level filters // gate_reduction).

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    levels = unet_levels(cfg, settings)
    inputs, x, skips = apply_unet_stem(cfg, levels)

    def gate(skip: keras.KerasTensor, coarse: keras.KerasTensor, i: int) -> keras.KerasTensor:
        inner = max(1, levels[i]["filters"] // cfg.gate_reduction)
        return apply_attention_gate(skip, coarse, inner, settings, name=f"gate{i}")

    x = apply_unet_decoder(x, skips, levels, gate)
    outputs = apply_segmentation_head(x, cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="attention_unet")
