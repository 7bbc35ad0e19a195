"""Each reference experiment trains 1 epoch end to end (wiring proof): on the real mini data of ../shared
where there is some (and then also eval and infer), else on tiny generated stand-in data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, compose

from flexseg.context import RunContext

pytestmark = pytest.mark.slow

REAL = {"lung_tumor": "lung_tumor_mini", "lizard": "lizard_mini"}  # experiment -> folder of ../shared/data

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


def _check_trained(name: str, results: dict[str, float], run_dir: Path) -> None:
    """One epoch done; the checkpoint has the experiment's outputs and loss; a dice per foreground class logged."""
    import csv

    import keras

    assert results["epochs"] == 1.0 and np.isfinite(results["objective"])
    outputs, loss, foreground = EXPECTED[name]
    model = keras.models.load_model(run_dir / "checkpoints" / "best.keras")
    assert model.output_shape[-1] == outputs
    assert getattr(model.loss, "name", getattr(model.loss, "__name__", None)) == loss
    with (run_dir / "train_metrics.csv").open() as fh:
        logged = {key for key in next(csv.reader(fh)) if key.startswith("dice_") and key != "dice_coef_multiclass"}
    assert logged == {f"dice_{c}" for c in foreground} | ({"dice_coef"} if outputs == 1 else set())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_experiment_trains_one_epoch_on_stand_in_data(name: str, tmp_path: Path) -> None:
    from flexseg.modes import train

    if name in REAL and SHARED_DATA.is_dir():
        pytest.skip(f"trained on {REAL[name]} by test_experiment_on_real_mini_data_train_eval_infer")
    small = ["model.image_height=64", "model.image_width=64", "model.num_layers=3", "model.base_filters=4",
             "train.epochs=1", "callbacks.num_infer_images=2", "tiling.tile_size=64", "tiling.overlap=16",
             f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/data"]
    if name == "tiled_cell":
        small += ["train.steps_per_epoch=2", "train.validation_steps=1"]
    cfg = compose([f"experiment={name}", *small])
    _stand_in(tmp_path / "data", cfg, per_class=name == "leukocyte", gray=name == "tiled_cell")
    _check_trained(name, train.run(cfg, RunContext(run_dir=tmp_path / "run", config_yaml="{}")), tmp_path / "run")


@pytest.mark.parametrize(("name", "folder"), list(REAL.items()))
def test_experiment_on_real_mini_data_train_eval_infer(name: str, folder: str, tmp_path: Path,
                                                       shared_data: Path) -> None:
    """The recipe runs train -> eval -> infer on the real files. Shrunk (64 px, 3 thin layers, 1 epoch):
    what counts is that the recipe and the data work, not accuracy; the CLI path is tests/modes/test_cli_e2e."""
    import csv

    from omegaconf import OmegaConf

    from flexseg.modes import evaluate, infer, train

    shrink = [f"experiment={name}", f"dataset.root={shared_data / folder}", "model.image_height=64",
              "model.image_width=64", "model.num_layers=3", "model.base_filters=4", "train.epochs=1",
              "callbacks.num_infer_images=2", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    for mode, runner in (("train", train), ("eval", evaluate), ("infer", infer)):
        overrides = [*shrink, f"mode={mode}"]  # eval, infer: ckpt=latest finds the training through MLflow
        cfg = compose(overrides)
        results = runner.run(cfg, RunContext(tmp_path / mode, overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))
        if mode == "train":
            _check_trained(name, results, tmp_path / "train")
    with (tmp_path / "eval" / "evaluation.csv").open() as fh:
        keys = [row[0] for row in csv.reader(fh)]
    assert keys[:2] == ["loss", "dice_coef_multiclass"] and "mean_foreground_dice" in keys
    tests = len(list((shared_data / folder / "test" / "images").iterdir()))
    assert len(list((tmp_path / "infer" / "infer" / "masks").iterdir())) == tests
