"""Fold ensembles: the mean of the members' probabilities, at the training size and rebuilt for tiles."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg.config.schemas import ModelConfig
from flexseg.errors import FlexsegError
from flexseg.inference.checkpoint import load_model_file
from flexseg.inference.ensemble import build_ensemble
from flexseg.inference.predict import Predictor
from flexseg.models.flexunet import build_flexunet


def _unet(seed: int, classes: int = 3, size: int = 16) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_flexunet(ModelConfig(image_height=size, image_width=size, base_filters=2, base_kernels=3,
                                      num_layers=2, dropout_rate=0.0, num_classes=classes))


def test_ensemble_predicts_the_mean_of_its_members_probabilities() -> None:
    a, b = _unet(1), _unet(2)
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    pa, pb = a.predict_on_batch(x), b.predict_on_batch(x)
    assert np.abs(pa - pb).max() > 1e-3  # the members differ, so the mean is a real test
    ensemble = build_ensemble({"run_a": a, "run_b": b})
    np.testing.assert_allclose(ensemble.predict_on_batch(x), (pa + pb) / 2, atol=1e-6)
    assert build_ensemble({"run_a": a}) is a  # a single model needs no wrapper


def test_tiles_rebuild_every_member_at_the_tile_size(tmp_path: Path) -> None:
    members = {}
    for seed in (1, 2):  # as eval/tiled get them: loaded from .keras files, all named 'flexunet'
        path = tmp_path / f"{seed}.keras"
        _unet(seed).save(path)
        members[f"run_{seed}"] = load_model_file(path)
    x = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)
    expected = np.mean([Predictor(m, 2).at_size(32, 32)(x) for m in members.values()], axis=0)
    tiles = Predictor(build_ensemble(members), 2).at_size(32, 32)
    assert tiles.input_size == (32, 32, 3)
    np.testing.assert_allclose(tiles(x), expected, atol=1e-6)


def test_members_that_disagree_are_named() -> None:
    with pytest.raises(FlexsegError, match=r"run_a takes 16x16x3 inputs with 3 output\(s\), run run_b .* with 2\."):
        build_ensemble({"run_a": _unet(1), "run_b": _unet(2, classes=2)})
