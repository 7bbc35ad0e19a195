"""Model registry: `model.name` -> pure builder function."""

from __future__ import annotations

from typing import Callable

import keras

from flexseg.config.schemas import ModelConfig
from flexseg.errors import FlexsegError
from flexseg.models.flexunet import build_flexunet

MODEL_BUILDERS: dict[str, Callable[[ModelConfig], keras.Model]] = {"flexunet": build_flexunet}


def build_model(cfg: ModelConfig) -> keras.Model:
    """Build the model named by `cfg.name`.

    Args:
        cfg: validated model config (`num_classes` an int).

    Returns:
        An uncompiled Keras model, images (batch, H, W, C) -> probabilities (batch, H, W, K).

    Raises:
        FlexsegError: when `cfg.name` is not a key of `MODEL_BUILDERS`, or a builder rejects a
            value (an unknown activation, say); the message names the `model.` key.
    """
    builder = MODEL_BUILDERS.get(cfg.name)
    if builder is None:
        raise FlexsegError(f"model.name='{cfg.name}' is unknown; available: {', '.join(MODEL_BUILDERS)}.")
    try:
        return builder(cfg)
    except ValueError as err:  # builders raise ValueError naming the bad value and the valid ones
        raise FlexsegError(f"model.{err}") from err
