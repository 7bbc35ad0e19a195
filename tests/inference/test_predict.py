"""The one predictor path: one compiled function, fixed-size batches, a model rebuilt at the tile size,
full-size labels."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from flexseg.config.choices import Normalization
from flexseg.inference import predict as predict_module
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

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.numpy_function(self.predict_on_batch, [images], tf.float32, stateful=True)

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
    # No normalisation: a random instance-normalised net saturates its softmax (logits ~10), where bf16's
    # 8-bit mantissa moves probabilities by up to ~0.05; the policy conversion under test is the same.
    return build_model(ModelConfig(image_height=32, image_width=32, num_classes=3, base_filters=4, base_kernels=3,
                                   num_layers=3, dropout_rate=0.0, normalization=Normalization.none))


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


def _tracings(predictor: Predictor) -> int:
    return predictor.function.experimental_get_tracing_count()


def test_the_compiled_function_traces_once_across_calls_and_a_short_last_batch() -> None:
    from flexseg.config.schemas import ModelConfig
    from flexseg.models.registry import build_model

    keras.utils.set_random_seed(3)  # dropout > 0: predictions must be the inference ones, not dropped out
    model = build_model(ModelConfig(image_height=32, image_width=32, num_classes=3, base_filters=4, base_kernels=3,
                                    num_layers=3, dropout_rate=0.3))
    predictor = Predictor(model, 4)
    rng = np.random.default_rng(4)
    for count in (4, 9, 1, 3):  # full, two full + a short one, short, short
        images = rng.random((count, 32, 32, 3), dtype=np.float32)
        probs = predictor(images)
        assert probs.shape == (count, 32, 32, 3) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, model(images, training=False), atol=1e-5)
    assert _tracings(predictor) == 1


def test_a_batch_of_the_wrong_size_fails_naming_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\).*\(2, 24, 24, 3\)"):
        Predictor(conv_model(16), 2)(np.zeros((2, 24, 24, 3), np.float32))


def test_a_bf16_model_predicts_float32_close_to_its_float32_self() -> None:
    model = _flexunet(5)
    bf16 = with_policy(model, "mixed_bfloat16")
    images = np.random.default_rng(5).random((3, 32, 32, 3), dtype=np.float32)
    predictor = Predictor(bf16, 2)
    probs = predictor(images)
    assert probs.dtype == np.float32 and _tracings(predictor) == 1
    np.testing.assert_allclose(probs, bf16(images, training=False), atol=1e-2)
    np.testing.assert_allclose(probs, model(images, training=False), atol=0.03)


def test_a_fold_ensemble_predicts_the_mean_of_its_members() -> None:
    from flexseg.inference.ensemble import build_ensemble

    members = [_flexunet(6), _flexunet(7)]
    images = np.random.default_rng(6).random((3, 32, 32, 3), dtype=np.float32)
    expected = np.mean([m(images, training=False) for m in members], axis=0)
    predictor = Predictor(build_ensemble({"a": members[0], "b": members[1]}), 2)
    np.testing.assert_allclose(predictor(images), expected, atol=1e-5)
    assert _tracings(predictor) == 1


def test_a_sigmoid_model_gives_one_channel() -> None:
    from flexseg.config.schemas import ModelConfig
    from flexseg.models.registry import build_model

    keras.utils.set_random_seed(8)
    model = build_model(ModelConfig(image_height=32, image_width=32, num_classes=1, base_filters=4, base_kernels=3,
                                    num_layers=2, dropout_rate=0.0))
    images = np.random.default_rng(8).random((3, 32, 32, 3), dtype=np.float32)
    predictor = Predictor(model, 2)
    assert predictor.num_outputs == 1
    probs = predictor(images)
    assert probs.shape == (3, 32, 32, 1)
    np.testing.assert_allclose(probs, model(images, training=False), atol=1e-5)
    assert (predictor.labels(images) == (probs[..., 0] > 0.5)).all()


def test_new_weights_show_in_the_next_call_without_retracing() -> None:
    model = _flexunet(9)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    images = np.random.default_rng(9).random((2, 32, 32, 3), dtype=np.float32)
    predictor = Predictor(model, 2)
    before = predictor(images)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    halved = predictor(images)
    assert np.abs(halved - before).max() > 1e-3
    np.testing.assert_allclose(halved, model(images, training=False), atol=1e-5)
    targets = keras.utils.to_categorical(np.zeros((2, 32, 32)), 3)
    model.train_on_batch(images, targets)  # an optimizer step
    stepped = predictor(images)
    assert np.abs(stepped - halved).max() > 1e-3
    np.testing.assert_allclose(stepped, model(images, training=False), atol=1e-5)
    assert _tracings(predictor) == 1


def test_epoch_pictures_compile_one_function_for_the_whole_fit_and_see_each_epochs_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flexseg.training.callbacks import EpochInference

    compiled: list[tf.types.experimental.PolymorphicFunction] = []
    compile_predict = predict_module.compile_predict

    def recording_compile(model: keras.Model, batch_size: int) -> tf.types.experimental.PolymorphicFunction:
        compiled.append(compile_predict(model, batch_size))
        return compiled[-1]

    monkeypatch.setattr(predict_module, "compile_predict", recording_compile)
    model = _flexunet(10)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    rng = np.random.default_rng(10)
    images = rng.random((4, 32, 32, 3), dtype=np.float32)
    targets = keras.utils.to_categorical(rng.integers(0, 3, (4, 32, 32)), 3)
    seen: list[np.ndarray] = []
    callback = EpochInference(images[:3], targets[:3], np.asarray([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8),
                              tmp_path, log_image=lambda picture, key, step: seen.append(picture))
    model.fit(images, targets, batch_size=2, epochs=3, verbose=0, callbacks=[callback])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"epoch_00{i}.png" for i in range(4)]
    assert len(seen) == 4 and len(compiled) == 1 and compiled[0].experimental_get_tracing_count() == 1
    assert np.abs(seen[-1].astype(int) - seen[0].astype(int)).max() > 0  # the weights moved the prediction
    np.testing.assert_allclose(callback._predictor(images[:3]), model(images[:3], training=False), atol=1e-5)


def test_many_predictors_in_one_process_give_no_retracing_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Each predictor traces its own function once; TensorFlow must not count them as one function
    retracing (a sweep or the benchmarks build many predictors in one process)."""
    model = conv_model(8)
    images = np.zeros((1, 8, 8, 3), np.float32)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for _ in range(7):
            Predictor(model, 1)(images)
    assert "retracing" not in caplog.text
