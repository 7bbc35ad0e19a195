"""`mode=preview`: a grid PNG of augmented image / mask-overlay pairs, logged as its own MLflow run."""

from __future__ import annotations

from pathlib import Path

import cv2
import mlflow
import numpy as np
import pytest
from conftest import TINY, compose

from flexseg.cli import RunContext
from flexseg.errors import FlexsegError
from flexseg.modes import preview


def test_grid_pairs_each_image_with_its_overlay() -> None:
    palette = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
    images = np.zeros((3, 40, 20, 3), np.float32)
    labels = np.zeros((3, 40, 20), np.int64)
    labels[:, :10] = 1
    grid = preview.build_preview_grid(images, labels, palette, columns=2, panel_size=20)
    # 2 pairs per row, panels scaled to 20 x 10, 2 rows (the last pair padded with blank panels), title bar 18.
    assert grid.shape == (18 + 2 * (20 + 4), 4 * (10 + 4), 3)
    first_overlay = grid[18 : 18 + 20, 14 : 14 + 10]
    assert first_overlay[:5, :, 0].min() > 50 and first_overlay[-5:].max() == 0  # red on the label, black elsewhere
    assert (grid[18 + 24 :, 2 * 14 :] == 255).all()  # padding


def test_preview_writes_the_grid_and_logs_a_preview_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose([*TINY, "mode=preview", "augment=reference", "preview.count=6", "preview.columns=3",
                   f"dataset.root={tmp_path / 'data'}", f"tracking.uri={uri}"])
    result = preview.run(cfg, RunContext(run_dir=tmp_path / "run"))
    assert result == {"images": 6.0}
    grid = cv2.imread(str(tmp_path / "run" / "preview.png"))
    assert grid.shape == (18 + 2 * (32 + 4), 6 * (32 + 4), 3)  # 2 rows of 3 pairs of 32 x 32 panels
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["synthetic"], filter_string="tags.mode = 'preview'", output_format="list")
    assert len(runs) == 1 and runs[0].data.params["augment.name"] == "reference"
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)] == ["preview.png"]


def test_bad_preview_values_name_the_key(tmp_path: Path) -> None:
    # The config check refuses it before the mode runs (flexseg/config/ranges.py).
    with pytest.raises(FlexsegError, match="preview.count=0 is out of range"):
        compose([*TINY, "mode=preview", "preview.count=0", f"dataset.root={tmp_path}"])
