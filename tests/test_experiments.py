"""The five reference experiments: every value of DESIGN §4, full-size models, and the INI converter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose, run_cli

from flexseg.config.choices import ColorOrder, MaskFormat, OptimizerName
from flexseg.tools.ini_import import convert_ini, main, to_yaml

FIXTURES = REPO / "tests" / "fixtures" / "ini"
# DESIGN §4: (classes, base_kernels, dropout, lr, clipvalue, loss, reference metric, reducer factor)
TABLE = {
    "lizard": (6, 9, 0.04, 7e-5, None, "categorical_crossentropy", "dice_coef_multiclass", 0.4),
    "lung_tumor": (2, 9, 0.04, 5e-5, None, "categorical_crossentropy", "dice_coef_multiclass", 0.4),
    "edf_cervical": (2, 9, 0.02, 7e-5, None, "categorical_crossentropy", "dice_coef_multiclass", 0.4),
    "leukocyte": (6, 9, 0.05, 7e-5, 0.4, "categorical_crossentropy", "dice_coef_multiclass", 0.5),
    "tiled_cell": (1, 7, 0.05, 1e-4, 0.5, "bce_dice_loss", "dice_coef", 0.3),
}
NAMES = {
    "lizard": "background,consep,crag,dpath,glas,pannuke", "lung_tumor": "background,tumor",
    "edf_cervical": "background,nucleus", "leukocyte": "background,baso,eosi,lymp,mono,neut",
    "tiled_cell": "background,cell",
}


@pytest.mark.parametrize("name", list(TABLE))
def test_experiment_sets_every_reference_value(name: str) -> None:
    classes, kernels, dropout, lr, clip, loss, metric, factor = TABLE[name]
    cfg = compose([f"experiment={name}"])
    m, t, c = cfg.model, cfg.train, cfg.callbacks
    assert (m.image_height, m.image_width, m.image_channels) == (512, 512, 3)
    assert (m.base_filters, m.base_kernels, m.num_layers, m.dropout_rate) == (16, kernels, 8, dropout)
    assert m.num_classes == classes
    assert (t.optimizer, t.batch_size, t.epochs, t.learning_rate, t.clipvalue, t.loss) == (
        OptimizerName.adam, 2, 100, lr, clip, loss)
    assert metric in t.metrics
    assert (c.monitor, c.patience, c.reduce_lr, c.reducer_factor) == ("val_loss", 10, True, factor)
    assert cfg.tracking.experiment == name and cfg.dataset.root == f"data/{name}"
    assert [x.name for x in cfg.dataset.classes] == NAMES[name].split(",")


def test_experiment_specifics() -> None:
    lizard = compose(["experiment=lizard"])
    assert [tuple(x.color) for x in lizard.dataset.classes] == [
        (0, 0, 0), (0, 255, 0), (255, 255, 0), (0, 255, 255), (255, 0, 0), (0, 0, 255)]
    assert lizard.callbacks.num_infer_images == 6
    leuk = compose(["experiment=leukocyte", "dataset.root=/x"])
    assert leuk.model.input_normalize is False and leuk.dataset.color_order is ColorOrder.RGB
    assert leuk.dataset.train_images is None  # flat or per-class folders: the layout is detected
    assert [tuple(x.color) for x in leuk.dataset.classes][1:] == [
        (0, 0, 255), (0, 255, 0), (255, 255, 0), (0, 255, 255), (255, 0, 0)]
    cell = compose(["experiment=tiled_cell"])
    assert (cell.train.steps_per_epoch, cell.train.validation_steps) == (240, 80)
    assert (cell.dataset.mask_format, cell.dataset.threshold, cell.dataset.color_converter) == (
        MaskFormat.gray, 80, "COLOR_BGR2HSV_FULL")
    assert cell.tiling.overlap == 64 and cell.callbacks.epoch_change_tiled
    assert cell.augment.name == "reference" and cell.augment.rotation.angles == [90, 180, 210, 270]
    assert cell.augment.barrdistortion.centers[0] == [0.3, 0.3] and cell.augment.sharpening.p == 0
    assert cell.dataset.classes[1].display_color == [0, 255, 0]  # white masks shown green


# 125.0 M is the reference count of the 9x9 / 8-layer FlexUNet; 7x7 kernels (tiled_cell) shrink only the
# first levels' convolutions, hence 124.6 M.
@pytest.mark.parametrize(("name", "millions"), [(n, 125.0) for n in list(TABLE)[:4]] + [("tiled_cell", 124.6)])
def test_full_size_parameter_count(name: str, millions: float) -> None:
    from flexseg.models.registry import build_model

    model = build_model(compose([f"experiment={name}"]).model)
    assert round(model.count_params() / 1e6, 1) == millions


@pytest.mark.parametrize("name", list(TABLE))
def test_ini_converter_round_trips_the_reference_config(name: str, tmp_path: Path) -> None:
    conv = convert_ini((FIXTURES / f"{name}.config").read_text(), FIXTURES, NAMES[name].split(","), name)
    exp_dir = tmp_path / "experiment"
    exp_dir.mkdir()
    (exp_dir / f"{name}_ini.yaml").write_text(to_yaml(conv, "fixture"))
    imported = compose([f"hydra.searchpath=[file://{tmp_path}]", f"experiment={name}_ini", f"dataset.root=data/{name}"])
    ours = compose([f"experiment={name}"])
    for section in ("model", "train", "callbacks"):
        a, b = getattr(imported, section), getattr(ours, section)
        for key in vars(b):
            if section == "callbacks" and key in ("epoch_change_tiled",) and name != "tiled_cell":
                continue
            assert getattr(a, key) == getattr(b, key), f"{section}.{key}"
    assert imported.dataset.classes == ours.dataset.classes  # tiled_cell: white shown green ([segmentation])
    assert imported.dataset.synthetic is None
    for key in ("mask_format", "threshold", "binarize", "color_converter", "color_order", "blur"):
        assert getattr(imported.dataset, key) == getattr(ours.dataset, key), key
    assert imported.augment == ours.augment
    assert imported.tiling.overlap == ours.tiling.overlap
    assert not conv.unknown or name == "tiled_cell"


def test_converter_reports_unknown_keys_and_never_evaluates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A code payload in `[image] gamma` (a key the converter carries over) is neither run nor carried."""
    monkeypatch.chdir(tmp_path)
    reference = (FIXTURES / "tiled_cell.config").read_text()
    text = reference.replace("[image]\n", "[image]\ngamma = __import__('os').system('touch PWNED')\n", 1)
    assert text != reference
    ini = tmp_path / "train_eval_infer.config"
    ini.write_text(text)
    out = tmp_path / "experiment" / "injected.yaml"
    out.parent.mkdir()
    assert main([str(ini), "-o", str(out), "--names", "bg,cell"]) == 0
    assert not (tmp_path / "PWNED").exists()
    err = capsys.readouterr().err
    assert "[bogus_section] made_up_key" in err
    assert "[image] gamma" in err and "not a number" in err
    assert out.read_text().startswith("# @package _global_")
    assert "gamma" not in yaml.safe_load(out.read_text())["dataset"]
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "experiment=injected", "dataset.root=/x"])
    assert cfg.dataset.gamma is None and cfg.model.num_classes == 1


def test_unknown_experiment_stops_with_the_available_ones(tmp_path: Path) -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):  # composing (tests, sweeps) stops too: the group is not optional
        compose(["experiment=lizrd"])
    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    (tmp_path / "my_conf" / "experiment" / "mine.yaml").write_text("# @package _global_\n")
    proc = run_cli(["--config-dir", "my_conf", "experiment=lizrd", "--cfg", "job"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Did you mean 'lizard'?" in proc.stderr and "demo, edf_cervical, leukocyte, lizard" in proc.stderr
    assert "mine" in proc.stderr  # the user's own, from --config-dir
    assert run_cli(["--config-dir", "my_conf", "experiment=mine", "--cfg", "job"], cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("per_class", [False, True])
def test_leukocyte_finds_pairs_in_flat_and_per_class_folders(tmp_path: Path, per_class: bool) -> None:
    import cv2
    import numpy as np

    from flexseg.data.discovery import build_split

    for folder in ("baso/", "neut/") if per_class else ("",):
        for kind in ("images", "masks"):
            (tmp_path / "train" / folder / kind).mkdir(parents=True)
            for i in range(2):
                cv2.imwrite(str(tmp_path / "train" / folder / kind / f"c{i}.bmp"), np.zeros((8, 8, 3), np.uint8))
    split = build_split(compose(["dataset=leukocyte", f"dataset.root={tmp_path}"]).dataset, "train")
    assert len(split) == (4 if per_class else 2)
    assert all(Path(i).stem == Path(m).stem and Path(i).parent.parent == Path(m).parent.parent
               for i, m in zip(split.images, split.masks))
