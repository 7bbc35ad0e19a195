"""Metrics against hand-computed values, their stateful behaviour, and a compiled tiny model."""

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg.errors import FlexsegError
from flexseg.training.losses import dice_coef, iou_coef
from flexseg.scoring import compute_confusion, compute_scores, nanmean_foreground
from flexseg.training.metrics import (
    METRICS,
    ForegroundDice,
    ForegroundIoU,
    build_metrics,
    dice_coef_multiclass,
    metric_log_names,
    sensitivity,
    specificity,
)


def _one_hot(labels: list[int] | np.ndarray, num_classes: int, shape=(1, 2, 2)) -> np.ndarray:
    """Integer labels -> one-hot float32 of shape (*shape, num_classes)."""
    labels = np.asarray(labels).reshape(shape)
    return np.eye(num_classes, dtype=np.float32)[labels]


def _dice(metric: ForegroundDice, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    metric.update_state(y_true, y_pred)
    return float(metric.result())


# --- dice_coef_multiclass (reference) ---------------------------------------------------------


def test_reference_dice_perfect_prediction_is_one() -> None:
    y = _one_hot([0, 1, 1, 0], 3)  # class 2 absent: smooth / smooth = 1
    assert float(dice_coef_multiclass(y, y)) == pytest.approx(1.0)


def test_reference_dice_hand_computed_soft() -> None:
    y_true = _one_hot([0, 1, 1, 0], 2)
    p1 = np.asarray([0.2, 0.6, 0.9, 0.5], dtype=np.float32)
    y_pred = np.stack([1 - p1, p1], axis=-1).reshape(1, 2, 2, 2)
    # all channels pooled: I = (0.8 + 0.5) + (0.6 + 0.9) = 2.8, sum(t) = 4, sum(p) = 4, smooth 1
    assert float(dice_coef_multiclass(y_true, y_pred)) == pytest.approx((2 * 2.8 + 1) / (4 + 4 + 1), rel=1e-5)


def test_reference_dice_is_the_mean_of_per_image_scores() -> None:
    y_true = np.concatenate([_one_hot([0, 1, 1, 0], 2), _one_hot([1, 1, 1, 1], 2)])
    y_pred = np.concatenate([_one_hot([0, 1, 1, 0], 2), _one_hot([0, 0, 0, 0], 2)])
    # image 1 perfect: 1; image 2 all wrong: (0 + 1) / (8 + 1)
    assert float(dice_coef_multiclass(y_true, y_pred)) == pytest.approx((1 + 1 / 9) / 2, rel=1e-6)


def test_reference_dice_binary_equals_dice_coef_for_one_image() -> None:
    y_true = np.asarray([1, 0, 1, 1], dtype=np.float32).reshape(1, 2, 2, 1)
    y_pred = np.asarray([0.5, 0.5, 1, 0], dtype=np.float32).reshape(1, 2, 2, 1)
    assert float(dice_coef_multiclass(y_true, y_pred)) == pytest.approx(float(dice_coef(y_true, y_pred, smooth=1.0)))


def test_reference_dice_is_inflated_by_background_while_foreground_dice_is_zero() -> None:
    labels = np.zeros(100, dtype=int)
    labels[42] = 1  # 1% foreground in a 10x10 mask
    y_true = _one_hot(labels, 2, shape=(1, 10, 10))
    y_pred = _one_hot(np.zeros(100, dtype=int), 2, shape=(1, 10, 10))  # all background
    # the reference pools all channels: I = 99 background pixels, sum(t) = sum(p) = 100
    assert float(dice_coef_multiclass(y_true, y_pred)) == pytest.approx((2 * 99 + 1) / (200 + 1), rel=1e-6)
    assert _dice(ForegroundDice(2), y_true, y_pred) == pytest.approx(0.0)
    assert _dice(ForegroundIoU(2), y_true, y_pred) == pytest.approx(0.0)
    scores = compute_scores(compute_confusion(labels, np.zeros(100, dtype=int), 2))
    assert nanmean_foreground(scores["dice"]) == pytest.approx(0.0)


def test_reference_sensitivity_and_specificity_hand_computed() -> None:
    y_true = np.asarray([1, 1, 0, 0], dtype=np.float32).reshape(1, 2, 2, 1)
    y_pred = np.asarray([0.9, 0.4, 0.6, 0.1], dtype=np.float32).reshape(1, 2, 2, 1)
    # round(t * p) = [1, 0, 0, 0] -> 1 of 2 positives; round((1-t)(1-p)) = [0, 0, 0, 1] -> 1 of 2 negatives
    assert float(sensitivity(y_true, y_pred)) == pytest.approx(0.5, rel=1e-6)
    assert float(specificity(y_true, y_pred)) == pytest.approx(0.5, rel=1e-6)
    assert float(sensitivity(y_true, y_true)) == pytest.approx(1.0, rel=1e-6)


def test_reference_iou_coef_perfect_prediction_is_one() -> None:
    y = _one_hot([0, 1, 2, 0], 3)
    assert float(iou_coef(y, y)) == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [dice_coef, dice_coef_multiclass])
def test_soft_dice_sums_in_float32_under_mixed_precision(fn) -> None:
    y = np.ones((1, 300, 300, 1), dtype=np.float16)  # 90,000 pixels: a float16 sum overflows
    assert float(fn(y, y)) == pytest.approx(1.0)


# --- ForegroundDice ----------------------------------------------------------------------------


def test_foreground_dice_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    y_true = _one_hot([0, 1, 1, 0], 3)
    y_pred = _one_hot([0, 1, 0, 0], 3)  # class 2 in neither
    assert _dice(ForegroundDice(3), y_true, y_pred) == pytest.approx(2 / 3)  # class 1: 2*1/(2+1)
    assert math.isnan(_dice(ForegroundDice(3, class_ids=[2], name="dice_b"), y_true, y_pred))
    assert _dice(ForegroundDice(3, class_ids=[0]), y_true, y_pred) == pytest.approx(0.8)


def test_foreground_iou_hand_computed_with_an_absent_class() -> None:
    y_true = _one_hot([0, 1, 1, 0], 3)
    y_pred = _one_hot([0, 1, 0, 1], 3)  # class 1: I 1, T 2, P 2 -> 1/3; class 2 absent
    assert _dice(ForegroundIoU(3), y_true, y_pred) == pytest.approx(1 / 3)
    assert math.isnan(_dice(ForegroundIoU(3, class_ids=[2], name="iou_b"), y_true, y_pred))
    assert _dice(ForegroundIoU(3, class_ids=[0]), y_true, y_pred) == pytest.approx(1 / 3)  # I 1, T 2, P 2


def test_foreground_dice_accumulates_over_batches() -> None:
    rng = np.random.default_rng(0)
    true_labels = rng.integers(0, 3, size=(4, 5, 5))
    pred_labels = np.where(rng.random((4, 5, 5)) < 0.6, true_labels, rng.integers(0, 3, (4, 5, 5)))
    y_true = _one_hot(true_labels, 3, shape=(4, 5, 5))
    y_pred = _one_hot(pred_labels, 3, shape=(4, 5, 5))
    split = ForegroundDice(3)
    split.update_state(y_true[:1], y_pred[:1])
    split.update_state(y_true[1:], y_pred[1:])
    whole = _dice(ForegroundDice(3), y_true, y_pred)
    assert float(split.result()) == pytest.approx(whole)
    scores = compute_scores(compute_confusion(true_labels, pred_labels, 3))
    assert whole == pytest.approx(nanmean_foreground(scores["dice"]), rel=1e-6)
    assert _dice(ForegroundIoU(3), y_true, y_pred) == pytest.approx(nanmean_foreground(scores["iou"]), rel=1e-6)


def test_foreground_dice_reset_state() -> None:
    metric = ForegroundDice(2)
    _dice(metric, _one_hot([1, 1, 0, 0], 2), _one_hot([1, 0, 0, 0], 2))
    metric.reset_state()
    assert math.isnan(float(metric.result()))  # nothing seen: every class absent
    assert _dice(metric, _one_hot([1, 0, 0, 0], 2), _one_hot([1, 0, 0, 0], 2)) == pytest.approx(1.0)


def test_foreground_dice_binary_thresholds_at_half() -> None:
    y_true = np.asarray([1, 1, 0, 0], dtype=np.float32).reshape(1, 2, 2, 1)
    y_pred = np.asarray([0.9, 0.5, 0.2, 0.1], dtype=np.float32).reshape(1, 2, 2, 1)  # 0.5 -> bg
    assert _dice(ForegroundDice(1), y_true, y_pred) == pytest.approx(2 / 3)
    assert _dice(ForegroundDice(1, class_ids=[0]), y_true, y_pred) == pytest.approx(0.8)
    empty = np.zeros_like(y_true)
    assert math.isnan(_dice(ForegroundDice(1), empty, empty))


def test_foreground_dice_sample_weight_zero_drops_pixels() -> None:
    y_true = _one_hot([1, 1, 0, 0], 2)
    y_pred = _one_hot([1, 0, 1, 0], 2)
    weighted = ForegroundDice(2)
    weighted.update_state(y_true, y_pred, sample_weight=np.asarray([[[1, 0], [0, 1]]], "float32"))
    assert float(weighted.result()) == pytest.approx(1.0)  # pixels left: (1, 1) and (0, 0)


@pytest.mark.parametrize("kind", [ForegroundDice, ForegroundIoU])
def test_foreground_score_config_round_trip(kind) -> None:
    metric = kind(6, class_ids=[3], name="score_dpath")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is kind
    assert (restored.name, restored.num_classes, restored.class_ids) == ("score_dpath", 6, [3])


@pytest.mark.parametrize("num_classes, class_ids", [(0, None), (3, [3]), (1, [2]), (3, [])])
def test_foreground_dice_rejects_bad_arguments(num_classes: int, class_ids) -> None:
    with pytest.raises(ValueError):
        ForegroundDice(num_classes, class_ids=class_ids)


# --- numpy evaluation helpers ------------------------------------------------------------------


def test_confusion_and_scores_hand_computed() -> None:
    y_true = np.asarray([[0, 0, 0], [0, 1, 1]])
    y_pred = np.asarray([[0, 1, 1], [0, 1, 0]])
    confusion = compute_confusion(y_true, y_pred, 3)
    assert confusion.dtype == np.int64
    np.testing.assert_array_equal(confusion, [[2, 2, 0], [1, 1, 0], [0, 0, 0]])
    scores = compute_scores(confusion)  # tp = [2, 1, 0], fp = [1, 2, 0], fn = [2, 1, 0]
    nan = np.nan
    np.testing.assert_allclose(scores["dice"], [4 / 7, 2 / 5, nan])
    np.testing.assert_allclose(scores["iou"], [2 / 5, 1 / 4, nan])
    np.testing.assert_allclose(scores["precision"], [2 / 3, 1 / 3, nan])
    np.testing.assert_allclose(scores["recall"], [1 / 2, 1 / 2, nan])
    assert nanmean_foreground(scores["dice"]) == pytest.approx(2 / 5)


def test_scores_class_predicted_but_never_true() -> None:
    scores = compute_scores(compute_confusion(np.asarray([0, 0]), np.asarray([0, 2]), 3))
    assert scores["dice"][2] == 0.0 and scores["precision"][2] == 0.0
    assert math.isnan(scores["recall"][2]) and math.isnan(scores["dice"][1])


def test_nanmean_foreground_all_nan_is_nan() -> None:
    assert math.isnan(nanmean_foreground(np.asarray([0.9, np.nan, np.nan])))


def test_confusion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        compute_confusion(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="must lie in"):
        compute_confusion(np.asarray([0, 2]), np.asarray([0, 1]), 2)


# --- build_metrics and a compiled model --------------------------------------------------------


def test_build_metrics_unknown_and_duplicate_names() -> None:
    with pytest.raises(FlexsegError, match="'jaccard' is unknown") as info:
        build_metrics(["dice", "jaccard"], 2, ["background", "tumour"])
    for name in METRICS:
        assert name in str(info.value)
    with pytest.raises(FlexsegError, match="more than once"):
        build_metrics(["dice", "dice"], 2, ["background", "tumour"])
    with pytest.raises(FlexsegError, match="needs 3 class names"):
        build_metrics(["dice"], 3, ["background", "a"])


def _tiny_model(num_classes: int) -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, activation=activation)(inputs))


# The model is saved untrained, so its optimizer has no variables yet; Keras warns about that.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compiled_model_logs_metric_names_and_values(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = _tiny_model(3)
    metrics = build_metrics(["dice", "dice_coef_multiclass", "iou"], 3, ["background", "a", "b"])
    model.compile(loss="categorical_crossentropy", metrics=metrics)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    labels = np.random.default_rng(2).integers(0, 3, size=(4, 8, 8))
    y = _one_hot(labels, 3, shape=(4, 8, 8))
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "dice", "dice_a", "dice_b", "dice_coef_multiclass", "iou", "iou_a", "iou_b"}
    scores = compute_scores(compute_confusion(labels, model.predict(x, verbose=0).argmax(-1), 3))
    assert logs["dice"] == pytest.approx(nanmean_foreground(scores["dice"]), rel=1e-5)
    assert logs["dice_b"] == pytest.approx(scores["dice"][2], rel=1e-5, nan_ok=True)
    assert logs["iou"] == pytest.approx(nanmean_foreground(scores["iou"]), rel=1e-5)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.evaluate(x, y, batch_size=2, verbose=0, return_dict=True) == pytest.approx(
        logs, nan_ok=True
    )


def test_compiled_binary_model_logs_metric_names() -> None:
    model = _tiny_model(1)
    names = ["dice", "dice_coef", "iou", "iou_coef", "sensitivity", "specificity"]
    model.compile(loss="binary_crossentropy", metrics=build_metrics(names, 1, ["background", "cell"]))
    x = np.zeros((2, 8, 8, 3), dtype="float32")
    y = np.zeros((2, 8, 8, 1), dtype="float32")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    expected = {"dice", "dice_cell", "dice_coef", "iou", "iou_cell", "iou_coef", "sensitivity", "specificity"}
    assert set(logs) == {"loss", *expected}
    assert set(metric_log_names(names, 1, ["background", "cell"])) == expected
