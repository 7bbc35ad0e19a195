"""DeepLabV3+ (Chen et al. 2018): a residual encoder with atrous convolutions, ASPP and a light decoder.

The encoder (a small ResNet: a stride-2 stem and 4 stages of `blocks_per_stage` residual blocks) stops
striding at `output_stride` and dilates instead; ASPP looks at its features with a 1x1 conv, 3x3
convs of the `aspp_rates` and the image mean. The decoder upsamples that to stride 4, concatenates
the projected stride-4 encoder features, refines with two 3x3 convs and upsamples the logits 4x.

The image-pooling branch is added, not concatenated: concat + 1x1 conv equals the sum of a 1x1 conv
per branch, and the pooled branch's (batch, 1, 1, c) projection broadcasts over any feature size. So
only built-in Keras layers: saves as `.keras`, reloads with `safe_mode=True`, any multiple of
`output_stride`.
"""

from __future__ import annotations

import keras

from flexseg.config.choices import Normalization
from flexseg.config.models import DeepLabV3PlusConfig
from flexseg.models.blocks import (
    ConvSettings,
    apply_conv_unit,
    apply_input_normalization,
    apply_normalization,
    apply_segmentation_head,
    conv_settings,
)


def apply_residual_block(
    x: keras.KerasTensor, filters: int, strides: int, dilation: int, settings: ConvSettings, name: str
) -> keras.KerasTensor:
    """A basic residual block: two 3x3 conv units (the first strided), a 1x1 projection shortcut when
    the shape changes. Layers ``{name}_conv1_*``, ``{name}_conv2_*``, ``{name}_shortcut_*``, ``{name}_add``,
    ``{name}_act``.

    Returns:
        Tensor of shape (batch, h / strides, w / strides, filters).
    """
    h = apply_conv_unit(x, filters, 3, settings, name=f"{name}_conv1", strides=strides,
                        dilation=1 if strides > 1 else dilation)
    h = apply_conv_unit(h, filters, 3, settings, name=f"{name}_conv2", dilation=dilation, activate=False)
    if strides > 1 or int(x.shape[-1]) != filters:
        x = apply_conv_unit(x, filters, 1, settings, name=f"{name}_shortcut", strides=strides, activate=False)
    h = keras.layers.Add(name=f"{name}_add")([x, h])
    return keras.layers.Activation(settings.activation, name=f"{name}_act")(h)


def apply_aspp(
    x: keras.KerasTensor, filters: int, rates: list[int], dropout: float, settings: ConvSettings, name: str = "aspp"
) -> keras.KerasTensor:
    """Atrous spatial pyramid pooling: a 1x1 branch, a 3x3 branch per rate, the image-mean branch.

    Layers: ``{name}_b0_*``, ``{name}_b{k}_*`` (rate k), ``{name}_concat``, ``{name}_project``,
    ``{name}_pool``, ``{name}_pool_conv`` / ``_act``, ``{name}_pool_project``, ``{name}_add``,
    ``{name}_norm``, ``{name}_act``, ``{name}_drop``.

    Args:
        x: encoder features, shape (batch, h, w, c).
        filters: channels of every branch and of the output.
        rates: dilation rates of the 3x3 branches.
        dropout: rate after the projection; 0 adds no layer.
        settings: normalisation, activation and initializer.
        name: prefix of the layer names.

    Returns:
        Tensor of shape (batch, h, w, filters).
    """
    init = settings.kernel_initializer
    branches = [apply_conv_unit(x, filters, 1, settings, name=f"{name}_b0")]
    branches += [apply_conv_unit(x, filters, 3, settings, name=f"{name}_b{k}", dilation=rate)
                 for k, rate in enumerate(rates, start=1)]
    h = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    h = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=init, name=f"{name}_project")(h)
    # Instance/group statistics of a 1x1 map are the value itself: the pooled branch is normalised only by batch norm.
    pool_settings = settings if Normalization(settings.normalization) == Normalization.batch else ConvSettings(
        Normalization.none, settings.bn_momentum, settings.activation, settings.kernel_initializer)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = apply_conv_unit(pooled, filters, 1, pool_settings, name=f"{name}_pool")
    pooled = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=init,
                                 name=f"{name}_pool_project")(pooled)
    h = keras.layers.Add(name=f"{name}_add")([h, pooled])  # (batch, 1, 1, filters) broadcasts over h x w
    h = apply_normalization(h, settings.normalization, settings.bn_momentum, name=f"{name}_norm")
    h = keras.layers.Activation(settings.activation, name=f"{name}_act")(h)
    return keras.layers.Dropout(dropout, name=f"{name}_drop")(h) if dropout > 0 else h


def build_deeplabv3plus(cfg: DeepLabV3PlusConfig) -> keras.Model:
    """Build a DeepLabV3+.

    Args:
        cfg: validated config; `num_classes` an int. Uses base_filters (stem; stage s has
            base_filters * 2**s), output_stride, aspp_rates (doubled at output_stride 8), aspp_filters,
            low_level_filters, blocks_per_stage, dropout_rate (after ASPP), normalization, activation,
            kernel_initializer and input_normalize (num_layers, base_kernels and dilation are not used).

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer.
    """
    settings = conv_settings(cfg)
    inputs = keras.Input((cfg.image_height, cfg.image_width, cfg.image_channels), name="image")
    x = apply_input_normalization(inputs, cfg.input_normalize)
    x = apply_conv_unit(x, cfg.base_filters, 3, settings, name="stem1", strides=2)
    x = apply_conv_unit(x, cfg.base_filters, 3, settings, name="stem2")
    stride, dilation, low_level = 2, 1, x
    for s in range(1, 5):
        step = 2 if stride < cfg.output_stride else 1
        if step == 1 and s > 1:
            dilation *= 2
        stride *= step
        for b in range(cfg.blocks_per_stage):
            x = apply_residual_block(x, cfg.base_filters * 2**s, step if b == 0 else 1, dilation, settings,
                                     name=f"stage{s}_block{b}")
        if s == 1:
            low_level = x  # stride 4
    rates = [r * 16 // cfg.output_stride for r in cfg.aspp_rates]
    x = apply_aspp(x, cfg.aspp_filters, rates, cfg.dropout_rate, settings)
    x = keras.layers.UpSampling2D(cfg.output_stride // 4, interpolation="bilinear", name="decoder_up")(x)
    low = apply_conv_unit(low_level, cfg.low_level_filters, 1, settings, name="decoder_low")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low])
    x = apply_conv_unit(x, cfg.aspp_filters, 3, settings, name="decoder_conv1")
    x = apply_conv_unit(x, cfg.aspp_filters, 3, settings, name="decoder_conv2")
    outputs = apply_segmentation_head(x, cfg.num_classes, cfg.kernel_initializer, upsample=4)
    return keras.Model(inputs, outputs, name="deeplabv3plus")
