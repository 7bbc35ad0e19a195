"""Every model of the zoo (`model=<name>`): output shapes, a loss that falls, `.keras` round trips, other sizes.

Tiny configs (32x32, 4-8 filters, 2 levels), eager where tracing would dominate: the whole file runs
on 2 CPU cores in about a minute.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg.config.models import MODEL_SCHEMAS
from flexseg.config.schemas import ModelConfig
from flexseg.config.store import CONF_DIR
from flexseg.errors import FlexsegError
from flexseg.inference.checkpoint import load_model_file
from flexseg.inference.predict import with_input_size
from flexseg.models.registry import MODEL_BUILDERS, build_model

SIZE = 32
# Each model's smallest sensible shape; the common keys below apply to all.
TINY_OWN: dict[str, dict[str, object]] = {
    "flexunet": {},
    "attention_unet": dict(gate_reduction=2),
    "unet3plus": dict(skip_filters=4, num_layers=3),  # 3 levels: a node also pools a finer level
    "multires_unet": dict(alpha=1.67),
    "sharp_unet": {},
    "u2net": dict(mid_filters=4, rsu_height=3, dilated_stages=1),  # an RSU-3 stage, then an RSU-4F
    "deeplabv3plus": dict(aspp_filters=8, low_level_filters=4, blocks_per_stage=1),
    "swin_unet": dict(base_filters=8, patch_size=2, window_size=4, num_heads=2, blocks_per_stage=2, mlp_ratio=2.0),
    "transunet": dict(hidden_size=16, transformer_layers=1, num_heads=2, mlp_dim=16),
    "efficient_unet": {},
}
ZOO = sorted(MODEL_SCHEMAS)


@pytest.fixture(autouse=True)
def _seed() -> None:
    keras.utils.set_random_seed(0)


def tiny_config(name: str, **overrides: object) -> ModelConfig:
    """A 32x32x3, 2-level, 4-filter config of model `name`, its own keys from TINY_OWN."""
    fields: dict[str, object] = dict(
        name=name, image_height=SIZE, image_width=SIZE, image_channels=3, num_classes=3, base_filters=4,
        base_kernels=3, num_layers=2, dropout_rate=0.0, normalization="instance", input_normalize=False,
    )
    fields.update(TINY_OWN[name])
    fields.update(overrides)
    return MODEL_SCHEMAS[name](**fields)


def random_images(n: int = 2, size: int = SIZE) -> np.ndarray:
    """Uniform images in [0, 1], shape (n, size, size, 3)."""
    return np.random.default_rng(0).random((n, size, size, 3), dtype=np.float32)


def test_every_model_has_a_schema_a_builder_and_a_config_file() -> None:
    files = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    assert sorted(MODEL_BUILDERS) == ZOO == files
    assert set(TINY_OWN) == set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_binary_model_gives_one_float32_sigmoid_channel_under_mixed_precision(name: str) -> None:
    """num_classes=1: one sigmoid channel; built in mixed_bfloat16 (train.precision=auto on AMX CPUs and
    Ampere+ GPUs) it computes in bfloat16 and still outputs float32 probabilities."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(tiny_config(name, num_classes=1))
        probs = np.asarray(model(random_images(), training=False))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.output.dtype == "float32" and probs.dtype == np.float32
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers if layer.weights)
    assert probs.shape == (2, SIZE, SIZE, 1) and ((probs >= 0) & (probs <= 1)).all() and np.isfinite(probs).all()
    assert model.get_layer("head_act").get_config()["activation"] == "sigmoid"


@pytest.mark.parametrize("name", ZOO)
def test_multiclass_model_trains_round_trips_and_takes_other_sizes(name: str, tmp_path: Path) -> None:
    """K-class softmax output; `.keras` reloads (safe_mode) with identical predictions; the model rebuilt
    for 2x larger tiles (mode=tiled) keeps its weights; one step on a batch lowers its loss.

    Eager calls and an eager training step: tracing a training step costs 8-30 s per model on 2 cores
    (the binary test predicts through a traced function, the CLI smoke test trains traced).
    """
    model = build_model(tiny_config(name))
    images = random_images()
    probs = np.asarray(model(images, training=False))
    assert probs.shape == (2, SIZE, SIZE, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = load_model_file(path)  # flexseg's loader: keras.models.load_model(safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(images, training=False)), probs, rtol=1e-5, atol=1e-6)

    larger = with_input_size(reloaded, 2 * SIZE, 2 * SIZE)
    big = np.asarray(larger(random_images(1, 2 * SIZE), training=False))
    assert big.shape == (1, 2 * SIZE, 2 * SIZE, 3) and np.isfinite(big).all()

    masks = (images[..., 0] > 0.5).astype(np.int32) + (images[..., 1] > 0.7)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True)
    losses = [float(model.train_on_batch(images, masks)) for _ in range(2)]  # the second after one update
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_efficient_unet_takes_encoder_weights_from_a_local_file_only(tmp_path: Path) -> None:
    """model.weights: a local file, copied layer by layer (its stem too); a missing file names the key."""
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "b0.weights.h5"
    source.save_weights(path)
    model = build_model(tiny_config("efficient_unet", weights=str(path)))
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], source.get_layer("stem_conv").get_weights()[0])
    np.testing.assert_array_equal(model.get_layer("top_bn").get_weights()[0], source.get_layer("top_bn").get_weights()[0])
    with pytest.raises(FlexsegError, match=r"model\.weights='/no/b0\.h5': no such file"):
        build_model(tiny_config("efficient_unet", weights="/no/b0.h5"))
