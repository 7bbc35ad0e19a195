"""Each reference experiment trains 1 epoch end to end on tiny generated stand-in data (wiring proof)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import compose

from flexseg.context import RunContext

pytestmark = pytest.mark.slow

# DESIGN §4: (model outputs, loss, foreground classes) each experiment must train with.
EXPECTED = {
    "lizard": (6, "categorical_crossentropy", ["consep", "crag", "dpath", "glas", "pannuke"]),
    "lung_tumor": (2, "categorical_crossentropy", ["tumor"]),
    "edf_cervical": (2, "categorical_crossentropy", ["nucleus"]),
    "leukocyte": (6, "categorical_crossentropy", ["baso", "eosi", "lymp", "mono", "neut"]),
    "tiled_cell": (1, "bce_dice_loss", ["cell"]),  # binary: one sigmoid output
}


def _stand_in(root: Path, cfg, per_class: bool, gray: bool) -> None:  # type: ignore[no-untyped-def]
    """A few 64x64 pairs per split in the experiment's layout, mask colours from its classes."""
    rng = np.random.default_rng(0)
    colors = [c.color for c in cfg.dataset.classes]
    folders = [c.name for c in cfg.dataset.classes[1:3]] if per_class else [""]
    for split in ("train", "valid", "test"):
        for folder in folders:
            for i in range(2):
                labels = np.zeros((64, 64), np.uint8)
                for k in range(1, len(colors)):
                    y, x = rng.integers(8, 56, 2)
                    cv2.circle(labels, (int(x), int(y)), 7, k, -1)
                mask = np.asarray(colors, np.uint8)[labels]
                image = (rng.normal(100, 20, (64, 64, 3)) + mask * 0.4).clip(0, 255).astype(np.uint8)
                base = root / split / folder
                for kind, arr in (("images", image), ("masks", mask[..., 0] if gray else mask)):
                    (base / kind).mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(base / kind / f"{folder or 'p'}_{i}.png"), arr if arr.ndim == 2 else arr[..., ::-1])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_experiment_trains_one_epoch_on_stand_in_data(name: str, tmp_path: Path) -> None:
    import csv

    import keras

    from flexseg.modes import train

    small = ["model.image_height=64", "model.image_width=64", "model.num_layers=3", "model.base_filters=4",
             "train.epochs=1", "callbacks.num_infer_images=2", "tiling.tile_size=64", "tiling.overlap=16",
             f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/data"]
    if name == "tiled_cell":
        small += ["train.steps_per_epoch=2", "train.validation_steps=1"]
    cfg = compose([f"experiment={name}", *small])
    _stand_in(tmp_path / "data", cfg, per_class=name == "leukocyte", gray=name == "tiled_cell")
    results = train.run(cfg, RunContext(run_dir=tmp_path / "run", config_yaml="{}"))
    assert results["epochs"] == 1.0 and np.isfinite(results["objective"])
    outputs, loss, foreground = EXPECTED[name]
    model = keras.models.load_model(tmp_path / "run" / "checkpoints" / "best.keras")
    assert model.output_shape[-1] == outputs
    assert getattr(model.loss, "name", getattr(model.loss, "__name__", None)) == loss
    with (tmp_path / "run" / "train_metrics.csv").open() as fh:
        logged = {key for key in next(csv.reader(fh)) if key.startswith("dice_") and key != "dice_coef_multiclass"}
    assert logged == {f"dice_{c}" for c in foreground} | ({"dice_coef"} if outputs == 1 else set())


@pytest.mark.parametrize(("name", "folder"), [("lung_tumor", "lung_tumor_mini"), ("lizard", "lizard_mini")])
def test_experiment_on_real_mini_data_train_eval_infer(name: str, folder: str, tmp_path: Path,
                                                       shared_data: Path) -> None:
    import csv

    from conftest import run_cli

    args = [f"experiment={name}", f"dataset.root={shared_data / folder}", "model.image_height=128",
            "model.image_width=128", "model.num_layers=5", "train.epochs=1", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    for mode in ("train", "eval", "infer"):
        run_cli([*args, f"mode={mode}", f"hydra.run.dir={tmp_path}/{mode}"], cwd=tmp_path)
    with (tmp_path / "eval" / "evaluation.csv").open() as fh:
        keys = [row[0] for row in csv.reader(fh)]
    assert keys[:2] == ["loss", "dice_coef_multiclass"] and "mean_foreground_dice" in keys
    tests = len(list((shared_data / folder / "test" / "images").iterdir()))
    assert len(list((tmp_path / "infer" / "infer" / "masks").iterdir())) == tests
