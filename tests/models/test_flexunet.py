"""Tests for the FlexUNet builder and the model registry (tiny shapes; the whole file runs on CPU)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg.config.schemas import ModelConfig
from flexseg.errors import FlexsegError
from flexseg.models.blocks import ACTIVATIONS
from flexseg.models.flexunet import build_flexunet
from flexseg.models.registry import MODEL_BUILDERS, build_model


@pytest.fixture(autouse=True)
def _seed() -> None:
    keras.utils.set_random_seed(0)


def tiny_config(**overrides: object) -> ModelConfig:
    """A 32x32x3, 3-level, 4-filter FlexUNet config; `overrides` replace single fields."""
    fields: dict[str, object] = dict(
        name="flexunet",
        image_height=32,
        image_width=32,
        image_channels=3,
        num_classes=3,
        base_filters=4,
        base_kernels=5,
        num_layers=3,
        dropout_rate=0.05,
        dilation=1,
        normalization="none",
        bn_momentum=0.99,
        activation="relu",
        input_normalize=False,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def random_images(n: int = 2, size: int = 32, channels: int = 3) -> np.ndarray:
    """Uniform images in [0, 1], shape (n, size, size, channels)."""
    return np.random.default_rng(0).random((n, size, size, channels), dtype=np.float32)


def test_multiclass_output_is_softmax() -> None:
    model = build_flexunet(tiny_config(num_classes=3))
    probs = model.predict(random_images(), verbose=0)
    assert probs.shape == (2, 32, 32, 3)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert model.get_layer("head_act").get_config()["activation"] == "softmax"


def test_binary_output_is_sigmoid() -> None:
    model = build_flexunet(tiny_config(num_classes=1))
    probs = model.predict(random_images(), verbose=0)
    assert probs.shape == (2, 32, 32, 1)
    assert ((probs > 0) & (probs < 1)).all()
    assert model.get_layer("head_act").get_config()["activation"] == "sigmoid"


def test_reference_parameter_count() -> None:
    """The lizard configuration of the reference: 125.0 M parameters (built, never run)."""
    cfg = ModelConfig(
        name="flexunet",
        image_height=512,
        image_width=512,
        image_channels=3,
        num_classes=6,
        base_filters=16,
        base_kernels=9,
        num_layers=8,
        dropout_rate=0.04,
        dilation=1,
        normalization="none",
        activation="relu",
        input_normalize=False,
    )
    assert round(build_flexunet(cfg).count_params() / 1e6, 1) == 125.0


def test_kernel_dilation_dropout_schedule() -> None:
    model = build_flexunet(tiny_config(base_kernels=9, dilation=3, num_layers=5, dropout_rate=0.1))
    kernels = [9, 7, 5, 3, 3]
    dilations = [3, 2, 1, 1, 1]
    for i in range(5):
        blocks = [f"enc{i}"] + ([f"dec{i}"] if i < 4 else [])
        for block in blocks:
            for conv in ("conv1", "conv2"):
                conf = model.get_layer(f"{block}_{conv}").get_config()
                assert conf["filters"] == 4 * 2**i
                assert tuple(conf["kernel_size"]) == (kernels[i], kernels[i])
                assert tuple(conf["dilation_rate"]) == (dilations[i], dilations[i])
            if i == 0:
                assert f"{block}_drop" not in [layer.name for layer in model.layers]
            else:
                assert model.get_layer(f"{block}_drop").rate == pytest.approx(0.1 * i)
    assert "enc4_pool" not in [layer.name for layer in model.layers]  # the bridge
    assert tuple(model.get_layer("dec0_up").get_config()["strides"]) == (2, 2)


@pytest.mark.parametrize(
    ("normalization", "layer_type", "groups"),
    [
        ("none", None, None),
        ("batch", keras.layers.BatchNormalization, None),
        ("instance", keras.layers.GroupNormalization, [4, 8, 16]),
        ("group", keras.layers.GroupNormalization, [4, 8, 8]),
    ],
)
def test_normalization_choices_build_and_run(
    normalization: str, layer_type: type | None, groups: list[int] | None
) -> None:
    model = build_flexunet(tiny_config(normalization=normalization, bn_momentum=0.9))
    names = [layer.name for layer in model.layers]
    if layer_type is None:
        assert not any("_norm" in n for n in names)
    else:
        for i in range(3):
            layer = model.get_layer(f"enc{i}_norm1")
            assert isinstance(layer, layer_type)
            assert names.index(f"enc{i}_conv1") < names.index(f"enc{i}_norm1") < names.index(f"enc{i}_act1")
            if groups is not None:
                assert layer.get_config()["groups"] in (-1, groups[i])
                assert layer.groups == groups[i]
    if normalization == "batch":
        assert model.get_layer("enc0_norm1").momentum == pytest.approx(0.9)
    probs = model.predict(random_images(), verbose=0)
    assert probs.shape == (2, 32, 32, 3) and np.isfinite(probs).all()


def test_input_normalize_standardises_each_image() -> None:
    model = build_flexunet(tiny_config(input_normalize=True))
    norm = keras.Model(model.input, model.get_layer("input_norm").output)
    images = random_images() * np.array([0.2, 1.0, 0.5], dtype=np.float32) + 0.3
    out = norm.predict(images, verbose=0)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)
    assert not model.get_layer("input_norm").weights


@pytest.mark.parametrize("activation", ["elu", "gelu", "mish", "swish"])
def test_named_activations(activation: str) -> None:
    model = build_flexunet(tiny_config(activation=activation))
    # Identity, not the config string: Keras serialises `swish` as its alias `silu`.
    assert model.get_layer("enc0_act1").activation is keras.activations.get(activation)


def test_unknown_activation_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="activation='relux' is unknown.*relu.*swish"):
        build_flexunet(tiny_config(activation="relux"))
    assert {"relu", "elu", "gelu", "mish", "swish"} <= set(ACTIVATIONS)


def test_registry_builds_and_rejects_unknown_name() -> None:
    assert MODEL_BUILDERS["flexunet"] is build_flexunet
    assert build_model(tiny_config()).name == "flexunet"
    with pytest.raises(FlexsegError, match=r"model.name='segformer' is unknown; available: flexunet, attention_unet, "):
        build_model(tiny_config(name="segformer"))
    with pytest.raises(FlexsegError, match=r"model\.activation='relux' is unknown"):
        build_model(tiny_config(activation="relux"))


def _deep_activation_scale(**overrides: object) -> float:
    """Std of the bottleneck activations of a fresh 6-level ReLU FlexUNet without normalisation,
    relative to the std of its uniform [0, 1] input (64x64)."""
    cfg = tiny_config(image_height=64, image_width=64, base_filters=8, num_layers=6, dropout_rate=0.0, **overrides)
    model = build_flexunet(cfg)
    probe = keras.Model(model.input, model.get_layer("enc5_act2").output)
    images = random_images(size=64)
    return float(probe.predict(images, verbose=0).std() / images.std())


def test_he_normal_keeps_the_activation_scale_of_a_deep_model() -> None:
    """Bug 11: the reference initialises every conv with he_normal; Keras's glorot default shrinks a
    deep ReLU stack's activations ~500x by the bottleneck (the model then predicted all background)."""
    model = build_flexunet(tiny_config())
    convs = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    assert len(convs) == 3 * 2 + 2 * 3 + 1  # encoder, decoder (with its transposed convs), head
    assert {type(layer.kernel_initializer).__name__ for layer in convs} == {"HeNormal"}
    assert 0.1 < _deep_activation_scale() < 10.0  # measured 0.6 .. 2.0 over seeds
    keras.utils.set_random_seed(0)
    assert _deep_activation_scale(kernel_initializer="glorot_uniform") < 0.01  # measured ~0.004
    with pytest.raises(FlexsegError, match=r"model\.kernel_initializer='he_normla' is unknown"):
        build_model(tiny_config(kernel_initializer="he_normla"))


def test_output_stays_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_flexunet(tiny_config())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("enc0_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_save_and_reload_with_safe_mode(tmp_path: Path) -> None:
    cfg = tiny_config(normalization="group", activation="mish", input_normalize=True, dilation=2)
    model = build_flexunet(cfg)
    path = tmp_path / "flexunet.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    images = random_images()
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6, atol=1e-6
    )


def disk_dataset(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright noisy disks on a dark noisy background.

    Returns:
        images (n, size, size, 3) float32 in [0, 1] and masks (n, size, size) int32 in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.empty((n, size, size), np.int32)
    for k in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        r = rng.uniform(4, 8)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        masks[k] = mask
        base = np.where(mask, 0.8, 0.2)[..., None] + rng.normal(0, 0.1, (size, size, 3))
        images[k] = np.clip(base, 0, 1)
    return images, masks


def test_inference_mode_is_not_degenerate_after_brief_training() -> None:
    """DESIGN section 4: after a short training, `predict()` (inference mode) must find the foreground.

    BatchNorm's lagging moving averages made `predict()` all background on small data; the
    instance-normalised model must not show that.
    """
    model = build_flexunet(tiny_config(num_classes=2, base_filters=8, normalization="instance"))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    images, masks = disk_dataset(64)
    model.fit(images, masks, batch_size=8, epochs=5, shuffle=True, verbose=0)  # 40 steps
    test_images, test_masks = disk_dataset(16, seed=1)
    pred = model.predict(test_images, verbose=0).argmax(axis=-1)
    assert pred.any(), "inference-mode prediction is all background"
    dice = 2 * np.sum(pred * test_masks) / (pred.sum() + test_masks.sum())
    assert dice > 0.5, f"dice {dice:.3f}"
