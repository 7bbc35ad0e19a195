"""The one way a loaded Keras model predicts: eval, infer, tiled and the epoch pictures all use it.

`Predictor` compiles one `tf.function` over `model(x, training=False)` with the fixed input
signature (batch_size, h, w, C) float32, so it traces once per predictor, and feeds it batches of
exactly `batch_size` images (a short last batch is zero-padded and its result cut back); it returns
float32 probabilities. The function reads the model's variables, not copies of them: it predicts
with the current weights of a model in training without retracing. It skips what `model.predict`
adds to every call (a data adapter and dataset iterator: ~0.1 s per call on 2 CPU cores). `Predictor.at_size` rebuilds the fully convolutional model for another input
size (the tiles of `mode=tiled`). `predict_full_size` is what `mode=infer` writes and what eval
scores at original size: model-size probabilities resized back (bilinear, per class) to each
image's own size, then labels.
"""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import keras
import numpy as np
import tensorflow as tf

from flexseg.inference.ensemble import build_ensemble, ensemble_members
from flexseg.scoring import labels_from_probs


def input_size(model: keras.Model) -> tuple[int, int, int]:
    """(height, width, channels) a model was built for."""
    _, height, width, channels = model.input_shape
    return int(height), int(width), int(channels)


def with_input_size(model: keras.Model, height: int, width: int) -> keras.Model:
    """The same fully convolutional model rebuilt for (height, width) inputs, with a copy of its weights.

    Returns `model` itself when it already takes that size; a fold ensemble is rebuilt member by member.
    """
    if input_size(model)[:2] == (height, width):
        return model
    members = ensemble_members(model)
    if members:
        return build_ensemble({m.name: with_input_size(m, height, width) for m in members})
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            shape = list(layer["config"]["batch_shape"])
            shape[1:3] = [height, width]
            layer["config"]["batch_shape"] = tuple(shape)
    resized = model.__class__.from_config(config)
    resized.set_weights(model.get_weights())
    return resized


def with_policy(model: keras.Model, policy: str) -> keras.Model:
    """The same model computing in the dtype policy `policy` (e.g. mixed_bfloat16), with a copy of its weights.

    A loaded model computes in the policy it was trained in; eval, infer and tiled run in the
    `train.precision` of the machine they run on instead. Output layers stay float32. Returns `model`
    itself when it already computes in `policy`; a fold ensemble is converted member by member.
    """
    members = ensemble_members(model)
    if members:
        converted = [with_policy(m, policy) for m in members]
        if all(c is m for c, m in zip(converted, members)):
            return model
        return build_ensemble({m.name: c for m, c in zip(members, converted)})
    config = model.get_config()
    entries = config["output_layers"]  # [name, i, j], or a list of those for several outputs
    outputs = {entries[0]} if isinstance(entries[0], str) else {entry[0] for entry in entries}
    inner = [layer for layer in model.layers if layer.name not in outputs and not isinstance(layer, keras.layers.InputLayer)]
    if all(layer.dtype_policy.name == policy for layer in inner):
        return model
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer" and layer["config"]["name"] not in outputs:
            layer["config"]["dtype"] = policy
    converted = model.__class__.from_config(config)
    converted.set_weights(model.get_weights())
    return converted


def resize_probabilities(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, K) probabilities -> (height, width, K), bilinear per channel (argmax after, not before)."""
    out = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
    return out[..., None] if out.ndim == 2 else out


def compile_predict(model: keras.Model, batch_size: int) -> tf.types.experimental.PolymorphicFunction:
    """One compiled inference function of `model` for batches of exactly `batch_size` images.

    The fixed input signature makes it trace once; it captures the model's variables, so weight
    changes (`set_weights`, an optimizer step) show in the next call without retracing.

    Args:
        model: (N, h, w, C) -> (N, h, w, K) probabilities, in any dtype policy.
        batch_size: N of every call.

    Returns:
        A `tf.function`: (batch_size, h, w, C) float32 -> (batch_size, h, w, K) float32.
    """
    height, width, channels = input_size(model)
    spec = tf.TensorSpec((batch_size, height, width, channels), tf.float32, name="images")
    return tf.function(_Forward(model), input_signature=[spec], autograph=False)


class _Forward:
    """`model(images, training=False)` as float32: what `compile_predict` traces.

    An object rather than a nested function: TensorFlow's retracing warning counts the traces of all
    functions sharing one code object, so every predictor's single trace would add up to a warning.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.model(images, training=False), tf.float32)


class Predictor:
    """A model predicting numpy batches in fixed-size batches through one compiled function.

    Args:
        model: A loaded (or training) Keras model, (N, h, w, C) -> (N, h, w, K) probabilities.
        batch_size: Images per model call; every call gets exactly this many.
        source: The model `model` was rebuilt from (`at_size`); `refresh` copies its weights.
    """

    def __init__(self, model: keras.Model, batch_size: int, source: Optional[keras.Model] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.model, self.batch_size, self.source = model, int(batch_size), source
        self._function: Optional[tf.types.experimental.PolymorphicFunction] = None

    @property
    def function(self) -> tf.types.experimental.PolymorphicFunction:
        """The compiled (batch_size, h, w, C) -> (batch_size, h, w, K) function, made on first use."""
        if self._function is None:
            self._function = compile_predict(self.model, self.batch_size)
        return self._function

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(height, width, channels) the model takes."""
        return input_size(self.model)

    @property
    def num_outputs(self) -> int:
        """K: class channels of the output (1 for a sigmoid model)."""
        return int(self.model.output_shape[-1])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w, C) float32 images -> (N, h, w, K) float32 probabilities, any N."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.input_size:
            raise ValueError(f"Predictor takes (N, {', '.join(map(str, self.input_size))}) images, got {batch.shape}.")
        size = self.batch_size
        parts = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            n = len(chunk)
            if n < size:
                chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.float32)])
            parts.append(self.function(chunk).numpy()[:n])
        if not parts:
            return np.zeros((0, *batch.shape[1:3], self.num_outputs), np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def labels(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w, C) float32 images -> (N, h, w) uint8 class indices."""
        return labels_from_probs(self(batch))

    def at_size(self, height: int, width: int) -> Predictor:
        """A predictor of the same model rebuilt for (height, width) inputs (itself when it takes them).

        The rebuilt model holds a copy of the weights; call `refresh` on it after they change.
        """
        if self.input_size[:2] == (height, width):
            return self
        return Predictor(with_input_size(self.model, height, width), self.batch_size, source=self.model)

    def refresh(self) -> None:
        """Copy the current weights of the model this one was rebuilt from (no-op when not rebuilt)."""
        if self.source is not None:
            self.model.set_weights(self.source.get_weights())


def predict_full_size(
    predictor: Predictor, batch: np.ndarray, sizes: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Predict a batch at model size and give each image's labels at its original size.

    Args:
        predictor: The model's predictor.
        batch: (N, h, w, C) float32 images resized to the model size.
        sizes: N (height, width) original sizes.

    Returns:
        ((N, h, w, K) float32 model-size probabilities, N (height_i, width_i) uint8 labels of the
        probabilities resized bilinearly to each original size).
    """
    probs = predictor(batch)
    labels = [labels_from_probs(resize_probabilities(p, h, w)) for p, (h, w) in zip(probs, sizes)]
    return probs, labels
