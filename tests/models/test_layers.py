"""The custom layers of the transformer models (flexseg.models.layers): windows, shifts, shapes, sizes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flexseg.models.layers import DepthToSpace, PositionEmbedding2D, SpaceToDepth, WindowAttention


def _changed(layer: keras.layers.Layer, x: np.ndarray, row: int, col: int) -> np.ndarray:
    """(H, W) bool: the outputs that change when the input token at (row, col) changes."""
    bumped = x.copy()
    bumped[0, row, col] += 1.0
    return np.abs(np.asarray(layer(bumped)) - np.asarray(layer(x)))[0].max(axis=-1) > 1e-6


@pytest.mark.parametrize(("shift", "window_of_token"), [(0, (slice(0, 4), slice(0, 4))), (2, (slice(0, 2), slice(0, 2)))])
def test_window_attention_mixes_only_tokens_of_one_window(shift: int, window_of_token: tuple[slice, slice]) -> None:
    """Unshifted: token (0, 0) reaches only its 4x4 window. Shifted by 2: the cyclic shift puts it in the
    last window beside tokens of the opposite border, which the mask hides: only the 2x2 corner remains."""
    keras.utils.set_random_seed(0)
    layer = WindowAttention(num_heads=2, window_size=4, shift=shift)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 4)).astype(np.float32)
    expected = np.zeros((8, 8), bool)
    expected[window_of_token] = True
    np.testing.assert_array_equal(_changed(layer, x, 0, 0), expected)


def test_space_depth_round_trip_and_shapes() -> None:
    x = np.arange(2 * 8 * 4 * 3, dtype=np.float32).reshape(2, 8, 4, 3)
    packed = SpaceToDepth(2)(x)
    assert tuple(packed.shape) == (2, 4, 2, 12)
    np.testing.assert_array_equal(np.asarray(DepthToSpace(2)(packed)), x)
    np.testing.assert_array_equal(np.asarray(packed)[0, 0, 0].reshape(2, 2, 3), x[0, :2, :2])


def test_position_embedding_is_resized_for_another_grid() -> None:
    layer = PositionEmbedding2D(4, 4)
    zeros = np.zeros((1, 4, 4, 2), np.float32)
    same = np.asarray(layer(zeros))[0]
    np.testing.assert_allclose(same, np.asarray(layer.embedding))
    larger = np.asarray(layer(np.zeros((1, 8, 8, 2), np.float32)))[0]
    assert larger.shape == (8, 8, 2)
    np.testing.assert_allclose(larger.mean(axis=(0, 1)), same.mean(axis=(0, 1)), atol=0.02)
