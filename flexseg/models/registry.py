"""Model registry: `model.name` -> pure builder function (one per file of the zoo)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from flexseg.config.models import MODEL_SCHEMAS
from flexseg.config.schemas import ModelConfig
from flexseg.errors import FlexsegError
from flexseg.models.attention_unet import build_attention_unet
from flexseg.models.deeplabv3plus import build_deeplabv3plus
from flexseg.models.efficient_unet import build_efficient_unet
from flexseg.models.flexunet import build_flexunet
from flexseg.models.multires_unet import build_multires_unet
from flexseg.models.sharp_unet import build_sharp_unet
from flexseg.models.swin_unet import build_swin_unet
from flexseg.models.transunet import build_transunet
from flexseg.models.u2net import build_u2net
from flexseg.models.unet3plus import build_unet3plus

# Each takes its schema of flexseg.config.models.MODEL_SCHEMAS (the same names; conf/model/<name>.yaml).
MODEL_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "flexunet": build_flexunet,
    "attention_unet": build_attention_unet,
    "unet3plus": build_unet3plus,
    "multires_unet": build_multires_unet,
    "sharp_unet": build_sharp_unet,
    "u2net": build_u2net,
    "deeplabv3plus": build_deeplabv3plus,
    "swin_unet": build_swin_unet,
    "transunet": build_transunet,
    "efficient_unet": build_efficient_unet,
}


def build_model(cfg: ModelConfig) -> keras.Model:
    """Build the model named by `cfg.name`.

    Args:
        cfg: validated model config (`num_classes` an int), of the schema of `cfg.name` (a plain
            `ModelConfig` gets that model's own keys at their defaults).

    Returns:
        An uncompiled Keras model, images (batch, H, W, C) -> probabilities (batch, H, W, K).

    Raises:
        FlexsegError: when `cfg.name` is not a key of `MODEL_BUILDERS`, or a builder rejects a
            value (an unknown activation, say); the message names the `model.` key.
    """
    builder = MODEL_BUILDERS.get(cfg.name)
    if builder is None:
        raise FlexsegError(f"model.name='{cfg.name}' is unknown; available: {', '.join(MODEL_BUILDERS)}.")
    schema = MODEL_SCHEMAS[cfg.name]
    if not isinstance(cfg, schema):  # a plain ModelConfig naming a zoo model: its own keys at their defaults
        cfg = schema(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ModelConfig)})
    try:
        return builder(cfg)
    except ValueError as err:  # builders raise ValueError naming the bad value and the valid ones
        raise FlexsegError(f"model.{err}") from err
