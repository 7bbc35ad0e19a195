"""End to end through the real CLI: train 2 epochs -> eval -> infer -> tiled, then read the MLflow store."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY, run_cli

pytestmark = pytest.mark.slow


def _store(tmp_path: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic",
            "tracking.experiment=e2e", *TINY]


def test_train_eval_infer_tiled_and_mlflow_record(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    common = _store(tmp_path)
    run_cli([*common, "train.epochs=2", f"hydra.run.dir={tmp_path}/train"], cwd=tmp_path)
    train_dir = tmp_path / "train"
    assert (train_dir / "checkpoints" / "best.keras").is_file()
    assert sorted(p.name for p in (train_dir / "epoch_change_infer").iterdir()) == [f"epoch_00{i}.png" for i in range(3)]
    with (train_dir / "train_losses.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "val_loss" in rows[0]

    run_cli([*common, "mode=eval", f"hydra.run.dir={tmp_path}/eval"], cwd=tmp_path)
    with (tmp_path / "eval" / "evaluation.csv").open() as fh:
        keys = [row[0] for row in csv.reader(fh)]
    assert keys[:2] == ["loss", "dice_coef_multiclass"]
    for key in ("dice_disk", "iou_square", "dice_triangle", "mean_foreground_dice"):
        assert key in keys

    run_cli([*common, "mode=infer", f"hydra.run.dir={tmp_path}/infer"], cwd=tmp_path)
    masks = sorted((tmp_path / "infer" / "infer" / "masks").iterdir())
    assert len(masks) == 4 and len(list((tmp_path / "infer" / "infer" / "overlays").iterdir())) == 4

    run_cli([*common, "mode=tiled", f"hydra.run.dir={tmp_path}/tiled"], cwd=tmp_path)
    tiled = tmp_path / "tiled" / "tiled"
    import cv2

    mask = cv2.imread(str(tiled / "masks" / "large_00.png"))
    assert mask.shape == (96, 96, 3)  # full size, not the tile size
    assert (tiled / "tiled_metrics.csv").is_file()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    exp = client.get_experiment_by_name("e2e")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.mode = 'train'")
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(c.data.tags["mode"] for c in children) == ["eval", "infer", "tiled"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert run.data.params["model.num_layers"] == "3"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "val_dice_disk")) == 2
    assert "test_mean_foreground_dice" in run.data.metrics
    assert "tiled_mean_foreground_dice" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "config.yaml", "images"} <= artifacts
    by_mode = {c.data.tags["mode"]: c.info.run_id for c in children}
    for mode in ("eval", "infer", "tiled"):
        assert mode in {a.path for a in client.list_artifacts(by_mode[mode])}
    image_files = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    for step in (1, 2):
        assert any(f"epoch_change_infer+step+{step}+" in p and p.endswith(".png") for p in image_files), image_files


def test_user_dataset_yaml_on_real_lung_tumor_data(tmp_path: Path, shared_data: Path) -> None:
    conf = tmp_path / "my_conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "lungs.yaml").write_text(
        f"root: {shared_data / 'lung_tumor_mini'}\nclasses:\n"
        "  - {name: background, color: [0, 0, 0]}\n  - {name: tumor, color: [255, 255, 255]}\n"
    )
    run_cli(["--config-dir", str(tmp_path / "my_conf"), "dataset=lungs", "model.image_height=64",
             "model.image_width=64", "model.num_classes=1", "model.num_layers=3", "model.base_filters=4", "train.epochs=1",
             "train.batch_size=4", "train.optimizer=sgd", "callbacks=minimal",
             f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run"],
            cwd=tmp_path)
    assert (tmp_path / "run" / "checkpoints" / "best.keras").is_file()
    assert (tmp_path / "run" / "train_metrics.csv").read_text().count("\n") == 2
