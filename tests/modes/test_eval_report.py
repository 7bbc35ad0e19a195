"""`mode=eval` report: reference lines first, per-class and per-image scores, confusion matrix, worst
images, all logged into the training's MLflow run; plus the report helpers on hand-made inputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY, compose
from omegaconf import OmegaConf

from flexseg.cli import RunContext
from flexseg.scoring import compute_confusion
from flexseg.modes import evaluate, train
from flexseg.reporting.tables import WorstImages
from flexseg.scoring import image_scores


def test_image_scores_absent_class_is_nan_and_left_out_of_the_means() -> None:
    truth = np.asarray([[0, 1], [1, 0]])
    pred = np.asarray([[0, 1], [0, 0]])
    row = image_scores(compute_confusion(truth, pred, 3), ["bg", "a", "b"])
    assert row["dice_a"] == pytest.approx(2 / 3) and row["iou_a"] == pytest.approx(1 / 2)
    assert math.isnan(row["dice_b"]) and math.isnan(row["iou_b"])
    assert row["mean_foreground_dice"] == pytest.approx(2 / 3)
    assert list(row)[:2] == ["mean_foreground_dice", "mean_foreground_iou"]


def test_worst_images_keeps_the_k_lowest_and_skips_nan() -> None:
    worst = WorstImages(2)
    panel = np.zeros((8, 8, 3), np.uint8)
    for name, score in (("a", 0.9), ("b", 0.1), ("c", float("nan")), ("d", 0.5), ("e", 0.7)):
        worst.offer(score, name, panel, panel, panel)
    assert len(worst) == 2
    assert sorted(item[2] for item in worst._heap) == ["b", "d"]
    gallery = worst.build_gallery()
    assert gallery.dtype == np.uint8 and gallery.shape[0] > 2 * 160  # panels enlarged for display


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    tmp = tmp_path_factory.mktemp("eval")
    store = [*TINY, f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"dataset.root={tmp}/synthetic",
             "tracking.experiment=evalreport", "callbacks=minimal"]
    overrides = [*store, "train.epochs=1"]
    cfg = compose(overrides)
    train.run(cfg, RunContext(tmp / "train", overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))
    eval_overrides = [*store, "mode=eval", "train.metrics=[dice_coef_multiclass,dice,iou,sensitivity]"]
    results = evaluate.run(compose(eval_overrides), RunContext(tmp / "eval", eval_overrides, ""))
    return tmp, results


def test_evaluation_csv_starts_with_the_reference_lines(evaluated: tuple[Path, dict[str, float]]) -> None:
    tmp, results = evaluated
    with (tmp / "eval" / "evaluation.csv").open() as fh:
        keys = [row[0] for row in csv.reader(fh)]
    assert keys[:3] == ["loss", "dice_coef_multiclass", "sensitivity"]
    metrics = ("dice", "iou", "precision", "recall")
    classes = ("background", "disk", "square", "triangle")
    model_size = [f"{m}_{n}" for m in metrics for n in classes] + [f"mean_foreground_{m}" for m in metrics]
    original = [f"{key}_original_size" for key in model_size]
    assert keys[-2 * len(model_size):] == model_size + original  # model resolution, then original size
    assert results["objective"] == results["mean_foreground_dice"]


def test_per_image_confusion_and_gallery_files(evaluated: tuple[Path, dict[str, float]]) -> None:
    tmp, results = evaluated
    out = tmp / "eval" / "eval"
    with (out / "evaluation_per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == [f"synth_{i:04d}" for i in range(4)]
    assert {"mean_foreground_dice", "dice_disk", "iou_triangle"} <= set(rows[0])
    with (out / "confusion_matrix.csv").open() as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["truth \\ prediction", "background", "disk", "square", "triangle"]
    assert sum(int(v) for row in table[1:] for v in row[1:]) == 4 * 32 * 32
    assert (out / "confusion_matrix.png").stat().st_size > 0 and (out / "worst_images.png").stat().st_size > 0


def test_everything_is_logged_into_a_child_of_the_training_run(evaluated: tuple[Path, dict[str, float]]) -> None:
    from mlflow.tracking import MlflowClient

    tmp, results = evaluated
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp_id = client.get_experiment_by_name("evalreport").experiment_id
    (train_run,) = client.search_runs([exp_id], filter_string="tags.mode = 'train'")
    (eval_run,) = client.search_runs([exp_id], filter_string="tags.mode = 'eval'")
    assert eval_run.data.tags["mlflow.parentRunId"] == train_run.info.run_id
    for run in (eval_run, train_run):  # the scores on the training run too, to compare training runs
        metrics = run.data.metrics
        assert metrics["test_mean_foreground_dice"] == pytest.approx(results["mean_foreground_dice"])
        assert {"test_dice_disk", "test_iou_square", "test_dice_coef_multiclass", "test_loss"} <= set(metrics)
    logged = {a.path for a in client.list_artifacts(eval_run.info.run_id, "eval")}
    assert {f"eval/{n}" for n in ("evaluation.csv", "evaluation_per_image.csv", "confusion_matrix.csv",
                                  "confusion_matrix.png", "worst_images.png")} == logged


def _read_scores(path: Path) -> dict[str, float]:
    with path.open() as fh:
        return {key: float(value) for key, value in csv.reader(fh)}


@pytest.fixture(scope="module")
def resized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """eval + infer of a random-weight checkpoint on 48 px test images (model: 32 px), one pair bad."""
    import keras

    from flexseg.models.registry import build_model
    from flexseg.modes import common, infer

    tmp = tmp_path_factory.mktemp("resized")
    overrides = [*TINY, f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"dataset.root={tmp}/synthetic",
                 "tracking.experiment=resized", "dataset.synthetic.image_size=48", f"ckpt={tmp}/random.keras",
                 "dataset.on_bad_file=skip"]
    cfg = compose(overrides)
    keras.utils.set_random_seed(2)
    build_model(cfg.model).save(tmp / "random.keras")
    common.prepare_dataset(cfg.dataset)
    foreign = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)  # passes discovery,
    cv2.imwrite(str(tmp / "synthetic" / "test" / "masks" / "synth_0001.png"), foreign)  # fails the colour check
    evaluate.run(compose([*overrides, "mode=eval"]), RunContext(tmp / "eval", overrides, ""))
    infer.run(compose([*overrides, "mode=infer"]), RunContext(tmp / "infer", overrides, ""))
    return tmp


def test_per_image_names_follow_their_images_when_a_pair_is_skipped(resized: Path) -> None:
    """Bug 7: names were taken by position, so after a skipped pair every later row had the wrong name."""
    with (resized / "eval" / "eval" / "evaluation_per_image.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == ["synth_0000", "synth_0002", "synth_0003"]
    assert {"mean_foreground_dice", "mean_foreground_dice_original_size"} <= set(rows[0])


def test_original_size_scores_are_those_of_the_masks_infer_writes(resized: Path) -> None:
    """Bug 6: eval scored only at model resolution; infer delivers masks at the original size."""
    from flexseg.data.masks import match_colors
    from flexseg.data.mask_files import read_labels
    from flexseg.data.readers import MaskOptions

    cfg = compose([*TINY, f"dataset.root={resized}/synthetic"])
    palette = np.asarray([c.color for c in cfg.dataset.classes], np.uint8)
    shown = np.asarray([c.display_color or c.color for c in cfg.dataset.classes], np.uint8)  # infer's colours
    names = [c.name for c in cfg.dataset.classes]
    confusion = np.zeros((len(names), len(names)), np.int64)
    for stem in ("synth_0000", "synth_0002", "synth_0003"):
        written = cv2.imread(str(resized / "infer" / "infer" / "masks" / f"{stem}.png"))[..., ::-1]  # RGB
        truth, _ = read_labels(resized / "synthetic" / "test" / "masks" / f"{stem}.png", MaskOptions(palette))
        assert written.shape[:2] == truth.shape == (48, 48)  # the original size, not the model's 32
        confusion += compute_confusion(truth, match_colors(written, shown)[0], len(names))
    scores = _read_scores(resized / "eval" / "evaluation.csv")
    with np.errstate(invalid="ignore"):  # a class absent from truth and prediction: NaN, as eval writes
        dice = 2 * np.diag(confusion) / (confusion.sum(0) + confusion.sum(1))
    for name, value in zip(names, dice):
        assert scores[f"dice_{name}_original_size"] == pytest.approx(value, rel=1e-5, nan_ok=True)
    assert scores["mean_foreground_dice_original_size"] == pytest.approx(np.nanmean(dice[1:]), rel=1e-5)
    assert "mean_foreground_dice" in scores  # the model-resolution lines stay
