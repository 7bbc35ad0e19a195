"""Swin-UNet (Cao et al. 2021): a UNet of shifted-window transformer blocks on image patches.

A patch embedding (a `patch_size` strided conv + LayerNorm) turns the image into tokens; each encoder
stage runs `blocks_per_stage` Swin blocks (window attention, regular and shifted in turn, and an MLP,
each pre-normed and residual) and merges 2x2 patches (`SpaceToDepth` + LayerNorm + Dense 2C); the
decoder expands patches (Dense 2C + `DepthToSpace` + LayerNorm), concatenates the encoder stage and
projects back to C before its blocks; a final x`patch_size` expansion gives full resolution. Feature
maps stay (batch, H, W, C) throughout and the attention has no absolute position embedding, so the
model takes any multiple of patch_size * 2**(num_layers-1) * window_size (saves as `.keras` and
reloads with `safe_mode=True` through the layers registered in `flexseg.models.layers`).
"""

from __future__ import annotations

import keras

from flexseg.config.models import SwinUNetConfig
from flexseg.models.blocks import apply_input_normalization, apply_segmentation_head, conv_settings
from flexseg.models.layers import DepthToSpace, SpaceToDepth, WindowAttention

LN_EPSILON = 1e-5


def apply_swin_block(
    x: keras.KerasTensor, num_heads: int, window_size: int, shift: int, mlp_ratio: float, dropout: float,
    activation: str, kernel_initializer: str, name: str,
) -> keras.KerasTensor:
    """One Swin block: x + WindowAttention(LN(x)), then x + MLP(LN(x)).

    Layers: ``{name}_norm1``, ``{name}_attn``, ``{name}_add1``, ``{name}_norm2``, ``{name}_mlp1``,
    ``{name}_mlp_act``, ``{name}_drop`` (dropout > 0), ``{name}_mlp2``, ``{name}_add2``.

    Args:
        x: tokens as a map, shape (batch, h, w, c); h and w multiples of window_size.
        num_heads, window_size, shift: of the window attention.
        mlp_ratio: hidden width of the MLP over c.
        dropout: rate of the attention probabilities and after the MLP's hidden layer.
        activation: of the MLP's hidden layer (gelu in the paper).
        kernel_initializer: of every Dense.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, h, w, c).
    """
    channels = int(x.shape[-1])
    h = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm1")(x)
    h = WindowAttention(num_heads, window_size, shift, dropout, kernel_initializer, name=f"{name}_attn")(h)
    x = keras.layers.Add(name=f"{name}_add1")([x, h])
    h = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm2")(x)
    h = keras.layers.Dense(int(channels * mlp_ratio), kernel_initializer=kernel_initializer, name=f"{name}_mlp1")(h)
    h = keras.layers.Activation(activation, name=f"{name}_mlp_act")(h)
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name=f"{name}_drop")(h)
    h = keras.layers.Dense(channels, kernel_initializer=kernel_initializer, name=f"{name}_mlp2")(h)
    return keras.layers.Add(name=f"{name}_add2")([x, h])


def apply_patch_expanding(
    x: keras.KerasTensor, factor: int, channels: int, kernel_initializer: str, name: str
) -> keras.KerasTensor:
    """Dense to factor**2 * channels, `DepthToSpace(factor)`, LayerNorm (``{name}_dense``, ``{name}_shuffle``,
    ``{name}_norm``): (batch, h, w, c) -> (batch, factor*h, factor*w, channels)."""
    x = keras.layers.Dense(factor * factor * channels, use_bias=False, kernel_initializer=kernel_initializer,
                           name=f"{name}_dense")(x)
    x = DepthToSpace(factor, name=f"{name}_shuffle")(x)
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm")(x)


def build_swin_unet(cfg: SwinUNetConfig) -> keras.Model:
    """Build a Swin-UNet.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters (embedding width C of stage 0;
            stage i has C * 2**i channels and num_heads * 2**i heads), num_layers (stages, the
            bottleneck included), patch_size, window_size, num_heads, blocks_per_stage, mlp_ratio,
            dropout_rate, activation (of the MLPs), kernel_initializer and input_normalize
            (normalization, base_kernels, dilation and bn_momentum are not used: LayerNorm throughout).

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    conv_settings(cfg)  # checks activation, initializer, num_classes
    init = cfg.kernel_initializer
    inputs = keras.Input((cfg.image_height, cfg.image_width, cfg.image_channels), name="image")
    x = apply_input_normalization(inputs, cfg.input_normalize)
    x = keras.layers.Conv2D(cfg.base_filters, cfg.patch_size, strides=cfg.patch_size, kernel_initializer=init,
                            name="patch_embed")(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="patch_embed_norm")(x)

    def stage(x: keras.KerasTensor, i: int, prefix: str) -> keras.KerasTensor:
        for b in range(cfg.blocks_per_stage):
            shift = cfg.window_size // 2 if b % 2 else 0
            x = apply_swin_block(x, cfg.num_heads * 2**i, cfg.window_size, shift, cfg.mlp_ratio, cfg.dropout_rate,
                                 cfg.activation, init, name=f"{prefix}{i}_block{b}")
        return x

    skips = []
    for i in range(cfg.num_layers):
        x = stage(x, i, "enc")
        if i < cfg.num_layers - 1:
            skips.append(x)
            x = SpaceToDepth(2, name=f"enc{i}_merge")(x)
            x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"enc{i}_merge_norm")(x)
            x = keras.layers.Dense(cfg.base_filters * 2 ** (i + 1), use_bias=False, kernel_initializer=init,
                                   name=f"enc{i}_merge_dense")(x)
    for i in range(cfg.num_layers - 2, -1, -1):
        x = apply_patch_expanding(x, 2, cfg.base_filters * 2**i, init, name=f"dec{i}_expand")
        x = keras.layers.Concatenate(name=f"dec{i}_concat")([x, skips[i]])
        x = keras.layers.Dense(cfg.base_filters * 2**i, kernel_initializer=init, name=f"dec{i}_project")(x)
        x = stage(x, i, "dec")
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="decoder_norm")(x)
    x = apply_patch_expanding(x, cfg.patch_size, cfg.base_filters, init, name="final_expand")
    outputs = apply_segmentation_head(x, cfg.num_classes, init)
    return keras.Model(inputs, outputs, name="swin_unet")
