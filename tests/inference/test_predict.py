"""The one predictor path: fixed-size batches, a model rebuilt at the tile size, full-size labels."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flexseg.inference.predict import (
    Predictor,
    predict_full_size,
    resize_probabilities,
    with_input_size,
    with_policy,
)


class RecordingModel:
    """Stands in for a Keras model: records batch shapes; probabilities = first two channels, normalised."""

    input_shape = (None, 8, 8, 3)
    output_shape = (None, 8, 8, 2)

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(batch.shape)
        return batch[..., :2] / np.maximum(batch[..., :2].sum(-1, keepdims=True), 1e-6)


def conv_model(size: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(hidden))


@pytest.mark.parametrize(("count", "calls"), [(3, 1), (4, 1), (9, 3), (0, 0)])
def test_every_model_call_gets_a_full_batch_and_rows_stay_in_order(count, calls):
    model = RecordingModel()
    batch = np.random.default_rng(0).random((count, 8, 8, 3), dtype=np.float32)
    probs = Predictor(model, 4)(batch)  # type: ignore[arg-type]
    assert model.seen == [(4, 8, 8, 3)] * calls
    assert probs.shape == (count, 8, 8, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, RecordingModel().predict_on_batch(batch), rtol=1e-6)


def test_labels_are_the_argmax_of_the_probabilities():
    batch = np.zeros((1, 8, 8, 3), np.float32)
    batch[0, :, 4:, 1] = 1.0  # right half: channel 1
    batch[0, :, :4, 0] = 1.0
    labels = Predictor(RecordingModel(), 2).labels(batch)  # type: ignore[arg-type]
    assert labels.dtype == np.uint8 and (labels[0, :, :4] == 0).all() and (labels[0, :, 4:] == 1).all()


def test_at_size_predicts_as_the_model_and_refresh_follows_new_weights():
    model = conv_model(16)
    predictor = Predictor(model, 2)
    assert predictor.at_size(16, 16) is predictor
    tiles = predictor.at_size(24, 24)
    assert tiles.input_size == (24, 24, 3) and tiles.model is not model
    x = np.random.default_rng(1).random((3, 24, 24, 3), dtype=np.float32)
    reference = with_input_size(model, 24, 24)
    np.testing.assert_allclose(tiles(x), reference.predict_on_batch(x), atol=1e-6)
    model.set_weights([w * 0.5 for w in model.get_weights()])  # a training step changes the weights
    assert np.abs(tiles(x) - with_input_size(model, 24, 24).predict_on_batch(x)).max() > 1e-4
    tiles.refresh()
    np.testing.assert_allclose(tiles(x), with_input_size(model, 24, 24).predict_on_batch(x), atol=1e-6)


def test_predict_full_size_resizes_probabilities_back_before_taking_labels():
    batch = np.zeros((2, 8, 8, 3), np.float32)
    batch[:, :, :, 0] = np.linspace(1, 0, 8)[None, None, :]  # class 0 fades left to right
    batch[:, :, :, 1] = np.linspace(0, 1, 8)[None, None, :]
    predictor = Predictor(RecordingModel(), 4)  # type: ignore[arg-type]
    probs, labels = predict_full_size(predictor, batch, [(20, 30), (5, 7)])
    assert probs.shape == (2, 8, 8, 2)
    assert [lab.shape for lab in labels] == [(20, 30), (5, 7)]
    expected = resize_probabilities(probs[0], 20, 30).argmax(-1)
    np.testing.assert_array_equal(labels[0], expected)
    assert (labels[0][:, :14] == 0).all() and (labels[0][:, 16:] == 1).all()  # the boundary at the middle


def _flexunet(seed: int) -> keras.Model:
    from flexseg.config.schemas import ModelConfig
    from flexseg.models.registry import build_model

    keras.utils.set_random_seed(seed)
    return build_model(ModelConfig(image_height=32, image_width=32, num_classes=3, base_filters=4, base_kernels=3,
                                   num_layers=3, dropout_rate=0.0))


def test_with_policy_runs_a_float32_model_in_bf16_with_float32_outputs_and_the_same_answers() -> None:
    model = _flexunet(0)
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    bf16 = with_policy(model, "mixed_bfloat16")
    inner = [layer for layer in bf16.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert {layer.dtype_policy.name for layer in inner[:-1]} == {"mixed_bfloat16"}
    assert inner[-1].dtype_policy.name == "float32"  # the output layer
    out = bf16.predict_on_batch(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, model.predict_on_batch(images), atol=0.03)
    assert with_policy(bf16, "mixed_bfloat16") is bf16 and with_policy(model, "float32") is model
    back = with_policy(bf16, "float32")
    np.testing.assert_allclose(back.predict_on_batch(images), model.predict_on_batch(images), atol=1e-6)


def test_with_policy_converts_every_member_of_a_fold_ensemble() -> None:
    from flexseg.inference.ensemble import build_ensemble, ensemble_members

    ensemble = build_ensemble({"a": _flexunet(1), "b": _flexunet(2)})
    converted = with_policy(ensemble, "mixed_bfloat16")
    assert converted is not ensemble
    for member in ensemble_members(converted):
        assert member.layers[1].dtype_policy.name == "mixed_bfloat16"
    images = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(converted.predict_on_batch(images), ensemble.predict_on_batch(images), atol=0.03)
