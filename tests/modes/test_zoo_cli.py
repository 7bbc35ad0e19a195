"""Zoo models end to end through the real CLI: train 1 epoch -> eval -> tiled at another tile size.

swin_unet stands for the zoo (tests/models/test_zoo.py covers every model in-process, `make zoo-bench`
trains each through the CLI): custom layers, window attention traced in a training step and in a
predictor rebuilt for another size. No per-epoch pictures and no mode=infer (it predicts as eval does):
tracing a zoo model costs 10-40 s per mode.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest
from conftest import TINY, run_cli

pytestmark = pytest.mark.slow

OWN = {
    "swin_unet": ["model.patch_size=2", "model.window_size=4", "model.blocks_per_stage=2", "model.num_heads=2"],
}


@pytest.mark.parametrize("name", sorted(OWN))
def test_zoo_model_trains_evaluates_and_tiles(name: str, tmp_path: Path) -> None:
    common = [f"model={name}", *TINY, *OWN[name], "callbacks=minimal", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
              f"dataset.root={tmp_path}/synthetic", "tracking.experiment=zoo"]
    run_cli([*common, "train.epochs=1", f"hydra.run.dir={tmp_path}/train"], cwd=tmp_path)
    assert (tmp_path / "train" / "checkpoints" / "best.keras").is_file()
    run_cli([*common, "mode=eval", f"hydra.run.dir={tmp_path}/eval"], cwd=tmp_path)
    with (tmp_path / "eval" / "evaluation.csv").open() as fh:
        assert "mean_foreground_dice" in [row[0] for row in csv.reader(fh)]
    # Tiles twice the training size: the model is rebuilt for them.
    run_cli([*common, "mode=tiled", "tiling.tile_size=64", "tiling.overlap=16", f"hydra.run.dir={tmp_path}/tiled"],
            cwd=tmp_path)
    mask = cv2.imread(str(tmp_path / "tiled" / "tiled" / "masks" / "large_00.png"))
    assert mask.shape == (96, 96, 3)
