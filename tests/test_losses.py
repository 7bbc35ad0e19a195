"""Losses against hand-computed values on 2x2 masks, and the loss registry."""

import math

import keras
import numpy as np
import pytest

from flexseg.errors import FlexsegError
from flexseg.losses import LOSSES, bce_dice_loss, dice_coef, get_loss


def _mask(values: list[float]) -> np.ndarray:
    """A (1, 2, 2, 1) float32 batch from four pixel values."""
    return np.asarray(values, dtype=np.float32).reshape(1, 2, 2, 1)


def test_dice_coef_hand_computed() -> None:
    y_true = _mask([1, 0, 1, 1])
    y_pred = _mask([0.5, 0.5, 1.0, 0.0])
    # sum(t*p) = 0.5 + 1.0 = 1.5; sum(t) = 3; sum(p) = 2
    assert float(dice_coef(y_true, y_pred)) == pytest.approx((2 * 1.5 + 1) / (3 + 2 + 1))
    assert float(dice_coef(y_true, y_pred, smooth=0.0)) == pytest.approx(3.0 / 5.0)


def test_dice_coef_pools_the_whole_batch() -> None:
    y_true = np.concatenate([_mask([1, 0, 0, 0]), _mask([0, 0, 0, 0])])
    y_pred = np.concatenate([_mask([1, 0, 0, 0]), _mask([0, 0, 0, 1])])
    # one pooled score: 2*1 / (1 + 2), not the mean of per-image scores
    assert float(dice_coef(y_true, y_pred, smooth=0.0)) == pytest.approx(2.0 / 3.0)


def test_dice_coef_empty_masks_score_one() -> None:
    empty = _mask([0, 0, 0, 0])
    assert float(dice_coef(empty, empty)) == pytest.approx(1.0)


def test_bce_dice_loss_hand_computed() -> None:
    y_true = _mask([1, 0, 1, 0])
    y_pred = _mask([0.8, 0.4, 0.8, 0.4])
    bce = (-math.log(0.8) - math.log(0.6)) / 2
    dice = (2 * 1.6 + 1) / (2 + 2.4 + 1)
    assert float(bce_dice_loss(y_true, y_pred)) == pytest.approx(bce + 1 - dice, rel=1e-5)


def test_bce_dice_loss_perfect_prediction_is_near_zero() -> None:
    y = _mask([1, 0, 0, 1])
    assert float(bce_dice_loss(y, y)) == pytest.approx(0.0, abs=1e-5)


def test_registry_names_and_objects() -> None:
    assert set(LOSSES) == {"categorical_crossentropy", "binary_crossentropy", "bce_dice_loss"}
    assert isinstance(get_loss("categorical_crossentropy"), keras.losses.CategoricalCrossentropy)
    assert isinstance(get_loss("binary_crossentropy"), keras.losses.BinaryCrossentropy)
    assert get_loss("bce_dice_loss") is bce_dice_loss


def test_unknown_loss_lists_valid_names() -> None:
    with pytest.raises(FlexsegError, match="train.loss='dice_los' is unknown") as info:
        get_loss("dice_los")
    for name in LOSSES:
        assert name in str(info.value)


@pytest.mark.parametrize("fn", [dice_coef, bce_dice_loss])
def test_custom_functions_are_keras_serializable(fn) -> None:
    assert keras.saving.get_registered_name(fn) == f"flexseg>{fn.__name__}"
    config = keras.saving.serialize_keras_object(fn)
    assert keras.saving.deserialize_keras_object(config) is fn
