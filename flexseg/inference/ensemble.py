"""A fold ensemble: one Keras model that averages the probabilities of several models (nnU-Net style).

`mode=eval|infer|tiled ckpt=runs:/<parent_id>` on the parent run of a k-fold cross-validation sweep
loads each fold's best checkpoint and predicts with their mean. The ensemble is a plain functional
model (one input, each member applied, `keras.layers.Average`), so every mode uses it as any other
model; `ensemble_members` lets `flexseg.inference.predict.with_input_size` rebuild it member by member.
"""

from __future__ import annotations

import keras

from flexseg.errors import FlexsegError

ENSEMBLE_NAME = "fold_ensemble"


def build_ensemble(models: dict[str, keras.Model]) -> keras.Model:
    """One model whose output is the mean of the members' outputs.

    Args:
        models: members by a name for messages and layer names (their MLflow run ids), each mapping
            (batch, h, w, C) images to (batch, h, w, K) probabilities; all must agree on (h, w, C) and K.
            The members are renamed `fold_<i>` (layer names must be unique within the ensemble).

    Returns:
        The single member itself, or a functional model (batch, h, w, C) -> (batch, h, w, K) float32
        giving the mean of the members' probabilities.

    Raises:
        FlexsegError: naming the members whose input shape or number of outputs differ.
    """
    if not models:
        raise ValueError("build_ensemble needs at least one model.")
    names, members = list(models), list(models.values())
    if len(members) == 1:
        return members[0]
    first = members[0]
    shape, outputs = tuple(first.input_shape[1:]), int(first.output_shape[-1])
    for name, model in zip(names[1:], members[1:]):
        if tuple(model.input_shape[1:]) != shape or int(model.output_shape[-1]) != outputs:
            raise FlexsegError(
                f"The fold models cannot be averaged: run {names[0]} takes {_shape(first)} inputs with {outputs} "
                f"output(s), run {name} takes {_shape(model)} inputs with {int(model.output_shape[-1])}. "
                "Evaluate them one by one (ckpt=runs:/<run_id>), or ensemble runs trained with the same config."
            )
    for i, model in enumerate(members):
        model.name = f"fold_{i}"
    inputs = keras.Input(shape, name="image")
    mean = keras.layers.Average(dtype="float32", name="mean_probabilities")([m(inputs) for m in members])
    return keras.Model(inputs, mean, name=ENSEMBLE_NAME)


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The member models of an ensemble `build_ensemble` made; [] for any other model."""
    if model.name != ENSEMBLE_NAME:
        return []
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def _shape(model: keras.Model) -> str:
    """'HxWxC' of a model's input."""
    return "x".join(str(d) for d in model.input_shape[1:])
