"""Config composition, typo/type errors with suggestions, cross-field checks, user dataset files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose, run_cli
from hydra.errors import ConfigCompositionException

from flexseg.config.choices import ColorOrder, JitCompile, Normalization, Resume
from flexseg.config.validation import check_override_key
from flexseg.errors import FlexsegError


def test_default_config_composes_and_resolves_num_classes() -> None:
    cfg = compose([])
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.num_classes == len(cfg.dataset.classes) == 4
    assert cfg.mode.value == "train"


def test_experiment_group_comes_from_experiments_folder() -> None:
    cfg = compose(["experiment=demo", "train.epochs=3"])
    assert cfg.tracking.experiment == "demo"
    assert cfg.model.image_height == 128
    assert cfg.train.epochs == 3


def test_misspelled_key_names_it_and_suggests_closest() -> None:
    with pytest.raises(FlexsegError, match=r"num_layerz.*Did you mean 'model\.num_layers'"):
        check_override_key("model.num_layerz")
    with pytest.raises(FlexsegError, match=r"Did you mean 'train\.epochs'"):
        check_override_key("epochs")
    check_override_key("model.num_layers")
    check_override_key("dataset.classes.0.name")
    check_override_key("experiment")


def test_cli_typo_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    proc = run_cli(["model.num_layerz=3"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "num_layerz" in proc.stderr and "num_layers" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_wrong_type_names_key(tmp_path: Path) -> None:
    proc = run_cli(["--cfg", "job", "model.num_layers=many"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "num_layers" in proc.stderr and "Traceback" not in proc.stderr


def test_cfg_job_prints_config_without_importing_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys; sys.argv = ['flexseg', '--cfg', 'job', 'model.num_layers=3']\n"
        "from flexseg.cli import main\n"
        "main()\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules or 'mlflow' in sys.modules else 'TF_NOT_LOADED')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "num_layers: 3" in proc.stdout
    assert "TF_NOT_LOADED" in proc.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.num_classes=3"], r"model\.num_classes=3 does not match the 4 entries"),
        (["model.num_classes=1"], r"needs exactly 2 entries"),
        (["model.image_height=100"], r"model\.image_height=100 is not divisible by 2\*\*\(num_layers-1\)=32"),
        (["tiling.overlap=256"], r"tiling\.overlap=256 must be >= 0 and smaller than tiling\.tile_size=256"),
        (["tiling.tile_size=200"], r"tiling\.tile_size=200 is not divisible"),
        (["dataset.classes.1.color=[0,0,0]"], r"duplicate color"),
    ],
)
def test_cross_field_checks(overrides: list[str], message: str) -> None:
    with pytest.raises(FlexsegError, match=message):
        compose(overrides)


def test_booleans_still_select_choices() -> None:
    """`true` / `false` reach OmegaConf as bools (command line and YAML alike), yet pick the choice."""
    cfg = compose(["train.resume=true", "train.jit_compile=false", "model.normalization=true"])
    assert cfg.train.resume is Resume.true and cfg.train.jit_compile is JitCompile.false
    assert cfg.model.normalization is Normalization.batch  # the reference INI's `normalization = True`
    assert compose(["model.normalization=false", "train.resume=auto"]).model.normalization is Normalization.none
    assert compose(["dataset.color_order=bgr"]).dataset.color_order is ColorOrder.BGR


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("tiling.blend=gausian", "gaussian, constant"),
        ("train.resume=maybe", "false, true, auto"),
        ("train.jit_compile=yes", "auto, true, false"),
        ("train.optimizer=rmsprop", "adam, adamw, sgd"),
        ("train.lr_schedule=step", "constant, cosine, polynomial"),
        ("train.precision=float16", "auto, float32, mixed_float16, mixed_bfloat16"),
        ("model.normalization=layer", "none, batch, instance, group, true, false"),
        ("dataset.mask_format=grey", "auto, rgb, gray, index"),
        ("dataset.on_bad_file=ignore", "error, skip"),
        ("dataset.image_interpolation=cubic", "auto, area, bilinear"),
        ("augment.fill_mode=wrap", "constant, reflect"),
        ("tiling.output_format=jpg", "auto, png, tiff"),
        ("preview.split=training", "train, valid, test"),
        ("stats.splits=[train,tests]", "train, valid, test"),
        ("train.resume=1", "false, true, auto"),
    ],
)
def test_bad_choice_stops_composition_listing_valid_values(override: str, valid: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose([override])
    assert f"expected one of [{valid}]" in str(info.value.__cause__)


def test_cli_bad_choice_stops_before_any_run(tmp_path: Path) -> None:
    proc = run_cli(["tiling.blend=gausian"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "tiling.blend" in proc.stderr and "expected one of [gaussian, constant]" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no outputs/


def test_multiclass_loss_on_one_output_stops_at_config_time() -> None:
    """Bug 9: categorical cross-entropy on one sigmoid output is constant: training learnt nothing."""
    with pytest.raises(FlexsegError, match=r"train\.loss=categorical_crossentropy needs a softmax.*bce_dice_loss"):
        compose(["experiment=tiled_cell", "train.loss=categorical_crossentropy"])
    with pytest.raises(FlexsegError, match=r"train\.loss=sparse_categorical_crossentropy"):
        compose(["experiment=lung_tumor", "model.num_classes=1", "train.loss=sparse_categorical_crossentropy"])
    assert compose(["experiment=lung_tumor", "model.num_classes=2"]).train.loss == "categorical_crossentropy"
    assert compose(["experiment=tiled_cell", "train.loss=focal_loss"]).model.num_classes == 1


def _user_dataset(tmp_path: Path, body: str) -> Path:
    conf = tmp_path / "my_conf"
    (conf / "dataset").mkdir(parents=True)
    (conf / "dataset" / "cells.yaml").write_text(body)
    return conf


def test_user_dataset_file_is_validated_like_builtin(tmp_path: Path) -> None:
    conf = _user_dataset(tmp_path, "root: /data/cells\nclasses:\n  - {name: bg, color: [0, 0, 0]}\n"
                                   "  - {name: cell, color: [255, 255, 255]}\n")
    cfg = compose([f"hydra.searchpath=[file://{conf}]", "dataset=cells"])
    assert cfg.dataset.root == "/data/cells" and cfg.model.num_classes == 2
    bad = _user_dataset(tmp_path / "bad", "rooot: /data/cells\nclasses: []\n")
    proc = run_cli(["--config-dir", str(bad), "dataset=cells"], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "rooot" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_modes_and_groups(tmp_path: Path) -> None:
    proc = run_cli(["--help"], cwd=tmp_path)
    assert "mode=train|eval|infer|tiled|stats|preview" in proc.stdout
    for group in ("model", "dataset", "augment", "callbacks", "tiling", "experiment"):
        assert f"{group}:" in proc.stdout


def test_help_shows_the_config_with_the_overrides_applied(tmp_path: Path) -> None:
    proc = run_cli(["--help", "experiment=demo", "model.num_layers=3"], cwd=tmp_path)
    assert "hparams_search: demo_optuna, unet_optuna" in proc.stdout
    assert "  image_height: 128\n" in proc.stdout and "  num_layers: 3\n" in proc.stdout
    bad = run_cli(["--help", "model.num_layers=abc"], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "model.num_layers=abc" in bad.stderr and "Traceback" not in bad.stderr
