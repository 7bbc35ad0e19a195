"""Losses against hand-computed values on small arrays, and the loss registry."""

import math

import keras
import numpy as np
import pytest

from flexseg.config.validation import BINARY_LOSSES, MULTICLASS_ONLY_LOSSES
from flexseg.errors import FlexsegError
from flexseg.training.losses import (
    LOSSES,
    DiceCELoss,
    FocalLoss,
    TverskyLoss,
    basnet_hybrid_loss,
    bce_dice_loss,
    bce_iou_loss,
    dice_coef,
    dice_loss,
    get_loss,
    iou_coef,
    iou_loss,
    loss_parameters,
    sparse_categorical_crossentropy,
)


def _mask(values: list[float]) -> np.ndarray:
    """A (1, 2, 2, 1) float32 batch from four pixel values."""
    return np.asarray(values, dtype=np.float32).reshape(1, 2, 2, 1)


def _probs(rows: list[list[float]]) -> np.ndarray:
    """Per-pixel class probabilities (4 pixels) -> (1, 2, 2, K) float32."""
    return np.asarray(rows, dtype=np.float32).reshape(1, 2, 2, -1)


def _one_hot(labels: list[int], num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)].reshape(1, 2, 2, num_classes)


# --- reference losses -------------------------------------------------------------------------


def test_dice_coef_hand_computed() -> None:
    y_true = _mask([1, 0, 1, 1])
    y_pred = _mask([0.5, 0.5, 1.0, 0.0])
    # sum(t*p) = 0.5 + 1.0 = 1.5; sum(t) = 3; sum(p) = 2
    assert float(dice_coef(y_true, y_pred)) == pytest.approx((2 * 1.5 + 1) / (3 + 2 + 1))
    assert float(dice_coef(y_true, y_pred, smooth=0.0)) == pytest.approx(3.0 / 5.0)
    assert float(dice_loss(y_true, y_pred)) == pytest.approx(1 - 4.0 / 6.0)


def test_dice_coef_pools_the_whole_batch() -> None:
    y_true = np.concatenate([_mask([1, 0, 0, 0]), _mask([0, 0, 0, 0])])
    y_pred = np.concatenate([_mask([1, 0, 0, 0]), _mask([0, 0, 0, 1])])
    # one pooled score: 2*1 / (1 + 2), not the mean of per-image scores
    assert float(dice_coef(y_true, y_pred, smooth=0.0)) == pytest.approx(2.0 / 3.0)


def test_dice_coef_empty_masks_score_one() -> None:
    empty = _mask([0, 0, 0, 0])
    assert float(dice_coef(empty, empty)) == pytest.approx(1.0)


def test_iou_coef_and_loss_hand_computed() -> None:
    y_true = _mask([1, 0, 1, 1])
    y_pred = _mask([0.5, 0.5, 1.0, 0.0])
    # I = 1.5; union = sum(t + p - t*p) = 3 + 2 - 1.5 = 3.5
    assert float(iou_coef(y_true, y_pred)) == pytest.approx(1.5 / 3.5, rel=1e-6)
    assert float(iou_loss(y_true, y_pred)) == pytest.approx(1 - 1.5 / 3.5, rel=1e-6)
    empty = _mask([0, 0, 0, 0])
    assert float(iou_coef(empty, empty)) == pytest.approx(1.0)  # the reference gives NaN (0/0) here


def test_bce_dice_loss_hand_computed_is_halved_as_the_reference() -> None:
    y_true = _mask([1, 0, 1, 0])
    y_pred = _mask([0.8, 0.4, 0.8, 0.4])
    bce = (-math.log(0.8) - math.log(0.6)) / 2
    dice = (2 * 1.6 + 1) / (2 + 2.4 + 1)
    assert float(bce_dice_loss(y_true, y_pred)) == pytest.approx((bce + 1 - dice) / 2, rel=1e-5)


def test_bce_iou_loss_hand_computed() -> None:
    y_true = _mask([1, 0, 1, 0])
    y_pred = _mask([0.8, 0.4, 0.8, 0.4])
    bce = (-math.log(0.8) - math.log(0.6)) / 2
    iou = 1.6 / (2 + 2.4 - 1.6)
    assert float(bce_iou_loss(y_true, y_pred)) == pytest.approx((bce + 1 - iou) / 2, rel=1e-5)


@pytest.mark.parametrize("fn", [bce_dice_loss, bce_iou_loss])
def test_bce_losses_perfect_prediction_is_near_zero(fn) -> None:
    y = _mask([1, 0, 0, 1])
    assert float(fn(y, y)) == pytest.approx(0.0, abs=1e-5)


def test_basnet_hybrid_loss_constant_images() -> None:
    import tensorflow as tf

    y_true = np.ones((1, 11, 11, 1), np.float32)  # 11x11: one SSIM window
    y_pred = np.full((1, 11, 11, 1), 0.5, np.float32)
    ssim = float(tf.image.ssim(y_true, y_pred, max_val=1.0)[0])  # the reference's SSIM term is tf.image.ssim
    bce = -math.log(0.5)
    iou = 0.5  # I = 0.5 N, union = N
    expected = (bce + (1 - ssim) + (1 - iou)) / 3
    assert float(basnet_hybrid_loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-4)
    assert float(basnet_hybrid_loss(y_true, y_true)) == pytest.approx(0.0, abs=1e-4)


def test_sparse_crossentropy_takes_indices_or_one_hot() -> None:
    probs = _probs([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]])
    labels = [0, 1, 2, 1]
    expected = -(math.log(0.7) + math.log(0.8) + math.log(0.6) + math.log(0.25)) / 4
    one_hot = _one_hot(labels, 3)
    indices = np.asarray(labels).reshape(1, 2, 2, 1)
    assert float(sparse_categorical_crossentropy(one_hot, probs)) == pytest.approx(expected, rel=1e-5)
    assert float(sparse_categorical_crossentropy(indices, probs)) == pytest.approx(expected, rel=1e-5)
    assert float(get_loss("categorical_crossentropy")(one_hot, probs)) == pytest.approx(expected, rel=1e-5)


# --- Dice + CE, focal, Tversky -----------------------------------------------------------------


def test_dice_ce_loss_excludes_background_and_absent_classes_cost_nothing() -> None:
    # classes: 0 background, 1 present, 2 absent from truth and (almost) from prediction
    y_true = _one_hot([0, 1, 1, 0], 3)
    y_pred = _probs([[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]])
    ce = -(math.log(0.9) + math.log(0.6) + math.log(0.8) + math.log(1.0)) / 4
    smooth = 1e-5
    tp, fp, fn = 1.4, 0.1, 0.6  # class 1
    dice_1 = (2 * tp + smooth) / (2 * tp + fp + fn + smooth)
    dice_2 = smooth / smooth  # absent from both: a perfect 1, no loss
    expected = ce + 1 - (dice_1 + dice_2) / 2
    assert float(DiceCELoss()(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_dice_ce_loss_binary_uses_bce_and_the_foreground_channel() -> None:
    y_true = _mask([1, 0, 1, 0])
    y_pred = _mask([0.8, 0.4, 0.8, 0.4])
    bce = (-math.log(0.8) - math.log(0.6)) / 2
    dice = (2 * 1.6 + 1e-5) / (2 * 1.6 + 0.8 + 0.4 + 1e-5)  # tp 1.6, fp 0.8, fn 0.4
    assert float(DiceCELoss()(y_true, y_pred)) == pytest.approx(bce + 1 - dice, rel=1e-5)


def test_focal_loss_hand_computed() -> None:
    y_true = _one_hot([0, 1, 1, 0], 2)
    y_pred = _probs([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.5, 0.5]])
    p_true = [0.9, 0.6, 0.8, 0.5]
    expected = sum(-0.25 * (1 - p) ** 2 * math.log(p) for p in p_true) / 4
    assert float(FocalLoss(gamma=2.0, alpha=0.25)(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)
    plain_ce = sum(-math.log(p) for p in p_true) / 4
    assert float(FocalLoss(gamma=0.0, alpha=1.0)(y_true, y_pred)) == pytest.approx(plain_ce, rel=1e-5)


def test_focal_loss_binary_hand_computed() -> None:
    y_true = _mask([1, 0, 1, 0])
    y_pred = _mask([0.8, 0.4, 0.8, 0.4])
    pos = -0.25 * 0.2**2 * math.log(0.8)
    neg = -0.75 * 0.4**2 * math.log(0.6)
    assert float(FocalLoss()(y_true, y_pred)) == pytest.approx((2 * pos + 2 * neg) / 4, rel=1e-5)


def test_tversky_loss_hand_computed_and_dice_at_half() -> None:
    y_true = _mask([1, 0, 1, 1])
    y_pred = _mask([0.5, 0.5, 1.0, 0.0])
    tp, fp, fn, smooth = 1.5, 0.5, 1.5, 1e-5
    index = (tp + smooth) / (tp + 0.3 * fp + 0.7 * fn + smooth)
    assert float(TverskyLoss(alpha=0.3, beta=0.7)(y_true, y_pred)) == pytest.approx(1 - index, rel=1e-5)
    soft_dice = (2 * tp + 2 * smooth) / (2 * tp + fp + fn + 2 * smooth)
    assert float(TverskyLoss(alpha=0.5, beta=0.5)(y_true, y_pred)) == pytest.approx(1 - soft_dice, rel=1e-4)


def test_tversky_loss_multiclass_averages_foreground_with_an_absent_class() -> None:
    y_true = _one_hot([0, 1, 1, 0], 3)
    y_pred = _one_hot([0, 1, 0, 0], 3)  # class 1: tp 1, fn 1; class 2 absent everywhere
    smooth = 1e-5
    index_1 = (1 + smooth) / (1 + 0.7 * 1 + smooth)
    assert float(TverskyLoss()(y_true, y_pred)) == pytest.approx(1 - (index_1 + 1.0) / 2, rel=1e-5)


# --- registry ----------------------------------------------------------------------------------


def test_registry_names_and_objects() -> None:
    assert set(LOSSES) == {
        "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "bce_dice_loss",
        "bce_iou_loss", "dice_loss", "iou_loss", "basnet_hybrid_loss", "dice_ce_loss", "focal_loss", "tversky_loss",
    }
    assert isinstance(get_loss("categorical_crossentropy"), keras.losses.CategoricalCrossentropy)
    assert isinstance(get_loss("binary_crossentropy"), keras.losses.BinaryCrossentropy)
    wrapped = get_loss("bce_dice_loss")
    assert wrapped.name == "bce_dice_loss"
    y = np.zeros((2, 4, 4, 1), np.float32)
    y[:, :2] = 1.0
    p = np.full_like(y, 0.7)
    np.testing.assert_allclose(float(wrapped(y, p)), float(bce_dice_loss(y, p)), rtol=1e-6)
    tversky = get_loss("tversky_loss", {"alpha": 0.2, "beta": 0.8})
    assert (tversky.alpha, tversky.beta) == (0.2, 0.8)
    assert loss_parameters("focal_loss") == ("gamma", "alpha")
    assert loss_parameters("dice_loss") == ()


@pytest.mark.filterwarnings("ignore:In loss categorical_crossentropy, expected y_pred.shape")
def test_config_table_of_multiclass_only_losses_matches_the_losses() -> None:
    """The TF-free table `validation` checks train.loss against (bug 9): on one sigmoid output the
    multi-class-only losses are constant or undefined, the suggested ones follow the prediction."""
    assert set(MULTICLASS_ONLY_LOSSES) | set(BINARY_LOSSES) <= set(LOSSES)
    target = _mask([0.0, 1.0, 1.0, 0.0])
    predictions = [np.full_like(target, 0.1), np.full_like(target, 0.9), target * 0.8 + 0.1]
    constant = [float(get_loss("categorical_crossentropy")(target, p)) for p in predictions]
    assert constant == [constant[0]] * 3
    with pytest.raises(Exception, match="label"):  # class index 1 of a single output
        get_loss("sparse_categorical_crossentropy")(target, predictions[2])
    for name in BINARY_LOSSES:
        values = [float(get_loss(name)(target, p)) for p in predictions]
        assert values[2] < min(values[:2]), name


def test_unknown_loss_lists_valid_names() -> None:
    with pytest.raises(FlexsegError, match="train.loss='dice_los' is unknown") as info:
        get_loss("dice_los")
    for name in LOSSES:
        assert name in str(info.value)


def test_bad_loss_args_name_the_key_and_valid_choices() -> None:
    with pytest.raises(FlexsegError, match="train.loss_args has gama.*takes alpha, beta, smooth"):
        get_loss("tversky_loss", {"gama": 1.0})
    with pytest.raises(FlexsegError, match="does not take; it takes none"):
        get_loss("dice_loss", {"smooth": 1.0})
    with pytest.raises(FlexsegError, match="gamma >= 0"):
        get_loss("focal_loss", {"gamma": -1.0})


@pytest.mark.parametrize("fn", [dice_coef, iou_coef, dice_loss, iou_loss, bce_dice_loss, bce_iou_loss,
                                basnet_hybrid_loss, sparse_categorical_crossentropy])
def test_custom_functions_are_keras_serializable(fn) -> None:
    assert keras.saving.get_registered_name(fn) == f"flexseg>{fn.__name__}"
    config = keras.saving.serialize_keras_object(fn)
    assert keras.saving.deserialize_keras_object(config) is fn


@pytest.mark.parametrize("loss", [DiceCELoss(smooth=0.5), FocalLoss(gamma=1.0, alpha=0.5),
                                  TverskyLoss(alpha=0.1, beta=0.9)])
def test_loss_classes_round_trip(loss) -> None:
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


_STRATEGY_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from flexseg.training.losses import get_loss
rng = np.random.default_rng(0)
x = rng.random((4, 8, 8, 3), dtype=np.float32)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (4, 8, 8))]
for name in sys.argv[1:]:
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
        model.compile(optimizer="sgd", loss=get_loss(name))
    logged = model.evaluate(x, y, batch_size=4, verbose=0)
    halves = [float(np.mean(get_loss(name)(y[i:i + 2], model(x[i:i + 2])))) for i in (0, 2)]
    print(name, logged, np.mean(halves))
"""


@pytest.mark.parametrize("names", [("dice_ce_loss", "bce_dice_loss", "tversky_loss", "categorical_crossentropy")])
def test_batch_pooled_losses_are_averaged_over_replicas_not_summed(names: tuple[str, ...]) -> None:
    """On 2 replicas Keras divides a per-sample loss by the replica count; a scalar loss was not divided,
    so the logged loss (and the gradients) of dice_ce_loss & co. came out 2x those of one device."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _STRATEGY_SCRIPT, *names], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in proc.stdout.strip().splitlines():
        name, logged, per_replica = line.split()
        assert float(logged) == pytest.approx(float(per_replica), rel=1e-4), name
