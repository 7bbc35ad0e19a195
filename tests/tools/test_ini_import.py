"""flexseg-import-ini: each reference INI shape -> an experiment that runs with the command the importer prints."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO, compose, seed_store

from flexseg.tools.ini_data import ConversionError
from flexseg.tools.ini_import import convert_ini, main, to_yaml

FIXTURES = REPO / "tests" / "fixtures" / "ini"
BIN = Path(sys.executable).parent  # the venv's console scripts: flexseg, flexseg-import-ini
# fixture -> --names; the binary INIs take the foreground name alone too.
SHAPES = {
    "lizard": "background,consep,crag,dpath,glas,pannuke",
    "lung_tumor": "background,tumor",
    "edf_cervical": "background,nucleus",
    "leukocyte": "background,baso,eosi,lymp,mono,neut",
    "tiled_cell": "cell",
    "gland_binary": "background,gland",
}
SMALL = ["model.image_height=32", "model.image_width=32", "model.num_layers=3", "model.base_filters=4",
         "model.base_kernels=3", "train.epochs=1", "train.batch_size=2", "train.steps_per_epoch=2",
         "train.validation_steps=1", "callbacks=minimal", "callbacks.epoch_change_infer=false"]


def _shell(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a console command as a user's shell would (the venv's bin first on PATH)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    seed_store(command)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _printed_command(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return shlex.split(lines[lines.index(next(x for x in lines if x.endswith("run it with:"))) + 1])


def _tiny_gray_data(root: Path, classes: list[dict]) -> None:
    """Two 32x32 image/gray-mask pairs per split, one disk of every class on each mask."""
    rng = np.random.default_rng(0)
    colors = np.asarray([c["color"] for c in classes], np.uint8)
    for split in ("train", "valid", "test"):
        for i in range(2):
            labels = np.zeros((32, 32), np.uint8)
            for k in range(1, len(colors)):
                cv2.circle(labels, tuple(int(v) for v in rng.integers(6, 26, 2)), 5, k, -1)
            mask = colors[labels]
            image = (rng.normal(100, 20, (32, 32, 3)) + mask * 0.4).clip(0, 255).astype(np.uint8)
            for kind, arr in (("images", image[..., ::-1]), ("masks", mask[..., 0])):
                (root / split / kind).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / split / kind / f"p{i}.png"), arr)


# Trained through the CLI with the printed command: the binary gray-mask kind. The multi-class RGB kind
# (lung_tumor) trains in the README test; per-class folders train in tests/modes/test_stats.py and
# test_experiments_run.py (leukocyte). The others are composed with the printed command.
TRAINED = ("tiled_cell",)


def _import(name: str, tmp_path: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    """Import fixture `name` into my_conf/experiment/ as a user would; (printed command, importer process)."""
    out = f"my_conf/experiment/my_{name}.yaml"
    imported = _shell(["flexseg-import-ini", str(FIXTURES / f"{name}.config"), "-o", out, "--names", SHAPES[name]],
                      tmp_path)
    assert imported.returncode == 0, imported.stderr
    command = _printed_command(imported.stdout)
    assert command == ["flexseg", "--config-dir", "my_conf", f"experiment=my_{name}"]
    return command, imported


@pytest.mark.parametrize("name", [n for n in SHAPES if n not in TRAINED])
def test_imported_experiment_composes_with_the_printed_command(name: str, tmp_path: Path) -> None:
    names = SHAPES[name]
    command, imported = _import(name, tmp_path)
    assert "dataset.root=DIR" in imported.stderr  # the INI's ../../../dataset/... does not exist here
    proc = _shell([*command, f"dataset.root={tmp_path / 'data'}", "--cfg", "job"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = yaml.safe_load(proc.stdout)
    assert job["dataset"]["synthetic"] is None and job["dataset"]["root"] == str(tmp_path / "data")
    assert [c["name"] for c in job["dataset"]["classes"]] == (["background", *names.split(",")] if "," not in names
                                                             else names.split(","))


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_imported_experiment_trains_with_the_printed_command(name: str, tmp_path: Path) -> None:
    out = f"my_conf/experiment/my_{name}.yaml"
    command, imported = _import(name, tmp_path)
    assert "dataset.root=DIR" in imported.stderr  # the INI's ../../../dataset/... does not exist here
    _tiny_gray_data(tmp_path / "data", yaml.safe_load((tmp_path / out).read_text())["dataset"]["classes"])
    proc = _shell([*command, f"dataset.root={tmp_path / 'data'}", *SMALL, f"tracking.uri=sqlite:///{tmp_path}/m.db",
                   f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "best.keras").is_file()
    assert "synthetic" not in proc.stderr


def test_printed_command_names_the_config_dir_and_bad_layouts_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    ini = str(FIXTURES / "lung_tumor.config")
    assert main([ini, "-o", "confs/mine/experiment/lung.yaml"]) == 0
    assert "\n  flexseg --config-dir confs/mine experiment=lung\n" in capsys.readouterr().out
    assert main([ini, "-o", "confs/mine/experiment/lung.yaml"]) == 0  # re-importing overwrites its own file
    for bad, why in (("lung.yaml", "DIR/experiment/NAME.yaml"), ("c/experiment/lizard.yaml", "choose another"),
                     ("c/experiment/lung.yml", ".yaml")):
        assert main([ini, "-o", bad]) == 2
        assert why in capsys.readouterr().err
    (tmp_path / "c" / "experiment").mkdir(parents=True)
    (tmp_path / "c" / "experiment" / "handmade.yaml").write_text("# @package _global_\n")
    assert main([ini, "-o", "c/experiment/handmade.yaml"]) == 2
    assert (tmp_path / "c" / "experiment" / "handmade.yaml").read_text() == "# @package _global_\n"


def test_imported_experiment_selects_a_dataset_without_synthetic_block(tmp_path: Path) -> None:
    conv = convert_ini((FIXTURES / "edf_cervical.config").read_text(), FIXTURES, ["background", "nucleus"], "edf")
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "edf.yaml").write_text(to_yaml(conv, "fixture"))
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "experiment=edf", "dataset.root=/data/edf"])
    assert cfg.dataset.synthetic is None and cfg.dataset.name == "edf" and cfg.model.num_classes == 2


def test_rgb_map_is_converted_not_reported_as_not_needed() -> None:
    conv = convert_ini((FIXTURES / "lizard.config").read_text(), FIXTURES)
    assert len(conv.values["dataset"]["classes"]) == 6
    assert not [k for k in conv.not_needed + conv.unknown if "rgb_map" in k]


@pytest.mark.parametrize("names", [["background", "cell"], ["cell"]])
def test_binary_ini_takes_two_names_or_the_foreground_alone(names: list[str]) -> None:
    conv = convert_ini((FIXTURES / "tiled_cell.config").read_text(), FIXTURES, names)
    assert [c["name"] for c in conv.values["dataset"]["classes"]] == ["background", "cell"]
    with pytest.raises(ConversionError, match="3 names but the INI defines 2 classes"):
        convert_ini((FIXTURES / "tiled_cell.config").read_text(), FIXTURES, ["a", "b", "c"])


def test_display_colours_and_mask_options_carry_over() -> None:
    conv = convert_ini((FIXTURES / "gland_binary.config").read_text(), FIXTURES, ["cell"])
    data = conv.values["dataset"]
    assert data["classes"][1]["display_color"] == [0, 255, 0] and "display_color" not in data["classes"][0]
    assert (data["mask_format"], data["blur"], data["binarize"], data["threshold"]) == ("gray", 5, True, 128)
    assert conv.unknown == []  # [segmentation] colorize/black/white, [mask] blur_size, [eval] are all read
    text = (FIXTURES / "gland_binary.config").read_text().replace('white         = "green"', 'white = "greenish"')
    assert "[segmentation] white = 'greenish'" in convert_ini(text, FIXTURES).invalid[0]


def test_relative_paths_resolve_against_data_root_or_are_left_out_with_a_note(tmp_path: Path) -> None:
    text = (FIXTURES / "lung_tumor.config").read_text()
    missing = convert_ini(text, FIXTURES)
    assert "root" not in missing.values["dataset"] and "images_dir" not in missing.values.get("infer", {})
    assert any("dataset.root=DIR" in n and "--data-root" in n for n in missing.notes)
    assert convert_ini(text, FIXTURES, data_root=tmp_path).values["dataset"]["root"] == str(tmp_path.resolve())
    project = tmp_path / "a" / "b" / "c"  # the reference layout: <repo>/projects/X/ beside <repo>/dataset/
    (project / "mini_test" / "images").mkdir(parents=True)
    (tmp_path / "dataset" / "Lung-Tumor").mkdir(parents=True)
    found = convert_ini(text, project)
    assert found.values["dataset"]["root"] == str(tmp_path / "dataset" / "Lung-Tumor")
    assert found.values["infer"]["images_dir"] == str(project / "mini_test" / "images")
    assert not found.notes


def test_data_root_option_makes_the_printed_command_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES, tmp_path / "ini")
    (tmp_path / "lung").mkdir()
    assert main(["ini/lung_tumor.config", "-o", "my_conf/experiment/lung.yaml", "--data-root", "lung"]) == 0
    assert "dataset.root=DIR" not in capsys.readouterr().err
    cfg = compose([f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "experiment=lung"])
    assert cfg.dataset.root == str(tmp_path / "lung")
    assert main(["ini/lung_tumor.config", "--data-root", "nowhere"]) == 2


@pytest.mark.slow
def test_readme_import_sequence_runs_verbatim(tmp_path: Path, shared_data: Path) -> None:
    """The README's "Bring your own reference experiment" commands, as written, from a copy of the repo root."""
    section = (REPO / "README.md").read_text().split("#### Bring your own reference experiment", 1)[1]
    commands = [shlex.split(line) for line in section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()]
    work = tmp_path / "repo"  # `tests/...` and `../shared/data` resolve as they do from the repository root
    work.mkdir()
    (work / "tests").symlink_to(REPO / "tests")
    (tmp_path / "shared").symlink_to(shared_data.parent)
    imported = _shell(commands[0], work)
    assert imported.returncode == 0, imported.stderr
    printed = _printed_command(imported.stdout)
    assert commands[1][: len(printed)] == printed  # the second command is the printed one plus overrides
    trained = _shell(commands[1], work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert len(list((work / "outputs" / "my_lung").glob("*/checkpoints/best.keras"))) == 1


def test_ini_without_normalization_imports_the_references_none_not_flexsegs_default() -> None:
    """The reference normalises nothing unless its INI says so; flexseg's default recipe uses instance."""
    assert "normalization" not in (FIXTURES / "tiled_cell.config").read_text()
    conv = convert_ini((FIXTURES / "tiled_cell.config").read_text(), FIXTURES, ["background", "cell"])
    assert conv.values["model"]["normalization"] == "none"
    conv = convert_ini((FIXTURES / "lung_tumor.config").read_text(), FIXTURES)
    assert conv.values["model"]["normalization"] in ("none", "batch")
