"""EfficientNet-UNet: a UNet decoder on a `keras.applications` EfficientNet encoder.

The encoder is built on the model's own input tensor, so its layers sit in the one functional graph
(no nested model) and the model rebuilds for another input size like the others. Its skips are the
features before each stride-2 stage (the common EfficientNet-UNet taps, strides 2..16) and its top
activation (stride 32); five up blocks decode back to full size. Images in [0, 1] are scaled to
[0, 255], what the encoder's own Rescaling + Normalization stem expects.

Weights are random unless `model.weights` names a local file; nothing is ever downloaded. The file
is loaded (`skip_mismatch=True`) into a standalone EfficientNet of the same variant and input, whose
weights are then copied layer by layer in order (auto-numbered layer names such as `normalization_3`
differ between two instances), skipping layers whose shapes differ (e.g. the stem of a 1-channel
model). ImageNet files of keras.applications work as such; their extra input Rescaling by
1/sqrt(stddev), added only for `weights="imagenet"`, is not, as keras.applications does for a path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from flexseg.config.models import EfficientUNetConfig
from flexseg.models.blocks import apply_input_normalization, apply_segmentation_head, apply_up_block, conv_settings

log = logging.getLogger(__name__)

# The encoder taps, finest first: strides 2, 4, 8, 16 (inputs of the stride-2 blocks) and 32.
SKIP_LAYERS = ("block2a_expand_activation", "block3a_expand_activation", "block4a_expand_activation",
               "block6a_expand_activation", "top_activation")


def efficientnet_constructor(variant: str):  # type: ignore[no-untyped-def]
    """keras.applications.EfficientNetB0 .. B7 for 'b0' .. 'b7'."""
    return getattr(keras.applications, f"EfficientNet{str(variant).upper()}")


def weights_file(cfg: EfficientUNetConfig) -> Path:
    """The existing local file `cfg.weights` names.

    Raises:
        ValueError: no such file.
    """
    path = Path(str(cfg.weights)).expanduser()
    if not path.is_file():
        raise ValueError(f"weights='{cfg.weights}': no such file. Give a local EfficientNet weights file "
                         f"(e.g. efficientnet{cfg.backbone}_notop.h5), or null for random initialisation.")
    return path


def load_encoder_weights(encoder: keras.Model, cfg: EfficientUNetConfig, path: Path) -> int:
    """Copy the weights of the file `path` into the encoder's layers; the number of layers set.

    Raises:
        ValueError: Keras cannot read the file as weights of this EfficientNet.
    """
    source = efficientnet_constructor(cfg.backbone)(
        include_top=False, weights=None, input_shape=(cfg.image_height, cfg.image_width, cfg.image_channels))
    try:
        source.load_weights(str(path), skip_mismatch=True)
    except Exception as err:  # Keras raises ValueError/OSError/KeyError for files of another model
        raise ValueError(f"weights='{cfg.weights}' cannot be loaded into EfficientNet{cfg.backbone.upper()}: "
                         f"{str(err).splitlines()[0][:200]}") from err
    targets = [layer for layer in encoder.layers if layer.weights]
    sources = [layer for layer in source.layers if layer.weights]
    copied = 0
    for target, layer in zip(targets, sources):
        values = layer.get_weights()
        if [v.shape for v in values] == [tuple(w.shape) for w in target.weights]:
            target.set_weights(values)
            copied += 1
    log.info("model.weights: %d of %d EfficientNet%s layers set from %s", copied, len(targets),
             cfg.backbone.upper(), path)
    return copied


def build_efficient_unet(cfg: EfficientUNetConfig) -> keras.Model:
    """Build an EfficientNet-UNet.

    Args:
        cfg: validated config; `num_classes` an int. Uses backbone, weights, base_filters (the decoder:
            base_filters * 2**(4-j) at its j-th up block), base_kernels, dilation, dropout_rate,
            normalization, activation and kernel_initializer (of the decoder) and input_normalize
            (num_layers is not used: the encoder has 5 stride-2 stages).

    Returns:
        Images (batch, H, W, C) in [0, 1] -> float32 probabilities (batch, H, W, num_classes).

    Raises:
        ValueError: an unknown activation or initializer, or an unusable weights file.
    """
    settings = conv_settings(cfg)
    path = weights_file(cfg) if cfg.weights else None
    inputs = keras.Input((cfg.image_height, cfg.image_width, cfg.image_channels), name="image")
    x = apply_input_normalization(inputs, cfg.input_normalize)
    x = keras.layers.Rescaling(255.0, name="to_pixel_range")(x)
    encoder = efficientnet_constructor(cfg.backbone)(include_top=False, weights=None, input_tensor=x)
    if path is not None:
        load_encoder_weights(encoder, cfg, path)
    features = [encoder.get_layer(name).output for name in SKIP_LAYERS]
    x = features[-1]
    for j, skip in enumerate([*features[-2::-1], None]):
        level = dict(filters=cfg.base_filters * 2 ** (4 - j), kernel=cfg.base_kernels, dilation=cfg.dilation,
                     dropout=cfg.dropout_rate * (4 - j), settings=settings)
        x = apply_up_block(x, skip, **level, name=f"dec{4 - j}")
    outputs = apply_segmentation_head(x, cfg.num_classes, cfg.kernel_initializer)
    return keras.Model(inputs, outputs, name="efficient_unet")
