"""`mode=eval` report: reference lines first, per-class and per-image scores, confusion matrix, worst
images, all logged into the training's MLflow run; plus the report helpers on hand-made inputs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

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
    for name in ("background", "disk", "square", "triangle"):
        for metric in ("dice", "iou", "precision", "recall"):
            assert f"{metric}_{name}" in keys
    assert keys[-4:] == [f"mean_foreground_{m}" for m in ("dice", "iou", "precision", "recall")]
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


def test_everything_is_logged_into_the_training_run(evaluated: tuple[Path, dict[str, float]]) -> None:
    from mlflow.tracking import MlflowClient

    tmp, results = evaluated
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("evalreport").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["mode"] == "train"
    metrics = runs[0].data.metrics
    assert metrics["test_mean_foreground_dice"] == pytest.approx(results["mean_foreground_dice"])
    assert {"test_dice_disk", "test_iou_square", "test_dice_coef_multiclass", "test_loss"} <= set(metrics)
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "eval")}
    assert {f"eval/{n}" for n in ("evaluation.csv", "evaluation_per_image.csv", "confusion_matrix.csv",
                                  "confusion_matrix.png", "worst_images.png")} == logged
