"""`flexseg.inference.serving`: every input form the MLflow model takes, read as the file readers read images,
and the choice between the model-size path (`mode=infer`) and the sliding window (`mode=tiled`)."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from flexseg.data.readers import ImageOptions, read_image
from flexseg.errors import FlexsegError
from flexseg.inference.predict import Predictor
from flexseg.inference.serving import Segmenter, ServingOptions, images_from_input
from flexseg.inference.sliding_window import predict_tiled


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    """A fully convolutional 3x3 conv -> softmax over 3 classes, 16x16 input, fixed weights."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(inputs)
    return keras.Model(inputs, outputs)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()


def test_every_input_form_gives_the_same_pixels() -> None:
    rgb = _image(5, 7)
    png = _png(rgb)
    forms = {
        "array": rgb,
        "json ints": rgb.astype(np.int64),  # what a JSON list of uint8 values becomes
        "bytes": png,
        "base64 text": base64.b64encode(png).decode(),
        "DataFrame of bytes": pd.DataFrame({"image": [png]}),
        "DataFrame of base64": pd.DataFrame({"image": [base64.b64encode(png).decode()]}),
        "dict of strings": {"image": np.asarray([base64.b64encode(png).decode()])},
        "list": [png],
    }
    for name, value in forms.items():
        images, _ = images_from_input(value)
        assert len(images) == 1 and np.array_equal(images[0], rgb), name
    assert images_from_input(rgb)[1] and not images_from_input([png])[1]  # one image vs a batch
    gray, _ = images_from_input(rgb[..., 0])
    assert gray[0].shape == (5, 7, 3)
    batch, single = images_from_input(np.stack([rgb, rgb]))
    assert len(batch) == 2 and not single


def test_bad_inputs_name_what_to_give(model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FlexsegError, match="PNG, JPEG or TIFF"):
        images_from_input(b"not an image")
    with pytest.raises(FlexsegError, match="output='masks'"):
        Segmenter(model, ServingOptions()).predict(_image(4, 4), output="masks")


def test_model_size_image_is_predicted_as_infer_reads_its_file(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rgb = _image(16, 16)
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    options = ServingOptions(channels=3, color_order="BGR", gamma=1.5, tile_size=16, overlap=4)
    segmenter = Segmenter(model, options)
    expected = Predictor(model, 4)(read_image(tmp_path / "a.png", options.image_options(), (16, 16))[None])[0]
    probs = segmenter.predict(_png(rgb), output="probabilities")
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert np.array_equal(segmenter.predict(rgb), expected.argmax(-1))


def test_larger_image_is_tiled_and_a_smaller_one_resized_back(model) -> None:  # type: ignore[no-untyped-def]
    segmenter = Segmenter(model, ServingOptions(tile_size=16, overlap=4, tile_batch_size=3))
    large = _image(40, 23, seed=1)
    tiled = predict_tiled(large.astype(np.float32) / 255, Predictor(model, 3), 16, 4, 3)
    np.testing.assert_allclose(segmenter.predict(large, output="probabilities"), tiled, atol=1e-6)
    small = segmenter.predict([_image(9, 12, seed=2), _image(9, 12, seed=3)])
    assert small.shape == (2, 9, 12) and small.dtype == np.uint8
    mixed = segmenter.predict([_image(9, 12), large])  # different sizes: a list, in input order
    assert [m.shape for m in mixed] == [(9, 12), (40, 23)]


def test_options_round_trip_through_a_plain_dict() -> None:
    options = ServingOptions(channels=1, color_converter="COLOR_BGR2HSV_FULL", gamma=2.0, tile_size=64, tta=True)
    assert ServingOptions.from_dict({**options.to_dict(), "unknown": 1}) == options
    assert options.image_options() == ImageOptions(1, "RGB", cv2.COLOR_BGR2HSV_FULL, 2.0, "auto")
