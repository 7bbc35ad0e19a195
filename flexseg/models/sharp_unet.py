"""Sharp U-Net (Zunair & Hamza 2021): each skip is sharpened by a fixed depthwise filter before the concat.

The encoder features are convolved channel by channel with a fixed 3x3 high-pass kernel (a frozen
`DepthwiseConv2D`, its weights set once here and saved with the model), which lessens the semantic
gap between the encoder's fine features and the decoder's smooth ones. Otherwise the zoo's UNet.
Only built-in Keras layers: saves as `.keras`, reloads with `safe_mode=True`, any multiple of 2**(L-1).
"""

from __future__ import annotations

import keras
import numpy as np

from flexseg.config.models import SharpenKernel, SharpUNetConfig
from flexseg.models.blocks import (
    apply_segmentation_head,
    apply_unet_decoder,
    apply_unet_stem,
    conv_settings,
    unet_levels,
)

SHARPEN_KERNELS: dict[SharpenKernel, list[list[float]]] = {
    SharpenKernel.laplacian: [[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]],
    SharpenKernel.sharpen: [[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]],
}


def apply_sharpen(x: keras.KerasTensor, kernel: SharpenKernel | str, name: str) -> keras.KerasTensor:
    """Convolve every channel of `x` with the fixed 3x3 kernel `kernel` (a frozen DepthwiseConv2D `name`).

    Args:
        x: features, shape (batch, h, w, c).
        kernel: a `SharpenKernel` name.
        name: the layer name.

    Returns:
        Tensor of shape (batch, h, w, c).
    """
    layer = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name=name)
    out = layer(x)
    channels = int(x.shape[-1])
    weights = np.tile(np.asarray(SHARPEN_KERNELS[SharpenKernel(kernel)], np.float32)[:, :, None, None], (1, 1, channels, 1))
    layer.set_weights([weights])
    return out


def build_sharp_unet(cfg: SharpUNetConfig) -> keras.Model:
    """Build a Sharp U-Net.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters, base_kernels, num_layers,
            dilation, dropout_rate, normalization, activation, kernel_initializer, input_normalize and
            sharpen_kernel.

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    levels = unet_levels(cfg, settings)
    inputs, x, skips = apply_unet_stem(cfg, levels)
    x = apply_unet_decoder(x, skips, levels,
                           lambda skip, _, i: apply_sharpen(skip, cfg.sharpen_kernel, name=f"sharpen{i}"))
    outputs = apply_segmentation_head(x, cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="sharp_unet")
