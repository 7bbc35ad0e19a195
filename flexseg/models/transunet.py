"""TransUNet (Chen et al. 2021): a CNN encoder, a ViT over its deepest feature map, a cascaded upsampler.

The CNN encoder is the zoo's UNet encoder (its skips feed the decoder); its bottleneck map of stride
2**(num_layers-1) is projected to `hidden_size` (patch size 1 on the features, as the paper's R50-ViT),
given a learned 2-D position embedding (`flexseg.models.layers.PositionEmbedding2D`) and passed
through `transformer_layers` pre-norm encoder layers whose attention spans both spatial axes of the
(batch, h, w, hidden) map (`MultiHeadAttention(attention_axes=(1, 2))`: no reshape to a token list,
so no fixed token count); a 3x3 conv unit maps it back to the CNN's width and UNet up blocks decode.
For an input size other than the training one the position embedding is resized bilinearly (as a
ViT at another resolution). Saves as `.keras`, reloads with `safe_mode=True`.
"""

from __future__ import annotations

import keras

from flexseg.config.models import TransUNetConfig
from flexseg.models.blocks import (
    apply_conv_unit,
    apply_segmentation_head,
    apply_unet_decoder,
    apply_unet_stem,
    conv_settings,
    unet_levels,
)
from flexseg.models.layers import PositionEmbedding2D

LN_EPSILON = 1e-6


def apply_transformer_layer(
    x: keras.KerasTensor, num_heads: int, mlp_dim: int, dropout: float, kernel_initializer: str, name: str
) -> keras.KerasTensor:
    """A pre-norm ViT encoder layer over a token map: x + MHA(LN(x)), then x + MLP(LN(x)) (gelu).

    Layers: ``{name}_norm1``, ``{name}_attn``, ``{name}_add1``, ``{name}_norm2``, ``{name}_mlp1``,
    ``{name}_drop`` (dropout > 0), ``{name}_mlp2``, ``{name}_add2``.

    Args:
        x: tokens as a map, shape (batch, h, w, hidden).
        num_heads: attention heads (hidden divisible by it).
        mlp_dim: hidden width of the MLP.
        dropout: of the attention probabilities and the MLP.
        kernel_initializer: of the attention projections and the MLP.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, h, w, hidden).
    """
    hidden = int(x.shape[-1])
    h = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm1")(x)
    h = keras.layers.MultiHeadAttention(num_heads, hidden // num_heads, dropout=dropout, attention_axes=(1, 2),
                                        kernel_initializer=kernel_initializer, name=f"{name}_attn")(h, h)
    x = keras.layers.Add(name=f"{name}_add1")([x, h])
    h = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm2")(x)
    h = keras.layers.Dense(mlp_dim, activation="gelu", kernel_initializer=kernel_initializer, name=f"{name}_mlp1")(h)
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name=f"{name}_drop")(h)
    h = keras.layers.Dense(hidden, kernel_initializer=kernel_initializer, name=f"{name}_mlp2")(h)
    return keras.layers.Add(name=f"{name}_add2")([x, h])


def build_transunet(cfg: TransUNetConfig) -> keras.Model:
    """Build a TransUNet.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters, base_kernels, num_layers,
            dilation, dropout_rate, normalization, activation, kernel_initializer and input_normalize
            (the CNN, as the zoo's UNet), hidden_size, transformer_layers, num_heads and mlp_dim.

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    levels = unet_levels(cfg, settings)
    init = cfg.kernel_initializer
    inputs, x, skips = apply_unet_stem(cfg, levels)
    stride = 2 ** (cfg.num_layers - 1)
    x = keras.layers.Conv2D(cfg.hidden_size, 1, kernel_initializer=init, name="embed")(x)
    x = PositionEmbedding2D(cfg.image_height // stride, cfg.image_width // stride, name="position_embedding")(x)
    if cfg.dropout_rate > 0:
        x = keras.layers.Dropout(cfg.dropout_rate, name="embed_drop")(x)
    for k in range(cfg.transformer_layers):
        x = apply_transformer_layer(x, cfg.num_heads, cfg.mlp_dim, cfg.dropout_rate, init, name=f"vit{k}")
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="vit_norm")(x)
    x = apply_conv_unit(x, levels[-1]["filters"], 3, settings, name="vit_out")
    x = apply_unet_decoder(x, skips, levels)
    outputs = apply_segmentation_head(x, cfg.num_classes, init)
    return keras.Model(inputs, outputs, name="transunet")
