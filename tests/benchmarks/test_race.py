"""`benchmarks/race.py`: recipes, parsing of evaluation.csv, the verdict and the figure JSON (no training)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose

from flexseg.config.choices import Normalization
from flexseg.reporting.tables import write_table


def _load_race():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("race", REPO / "benchmarks" / "race.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["race"] = module  # its dataclass looks its module up while the class is made
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


race = _load_race()


def test_reference_recipe_is_the_lung_tumor_experiment_on_either_dataset(tmp_path: Path) -> None:
    lung = compose([*race.dataset_overrides("lung_tumor", tmp_path),
                    *race.recipe_overrides("reference", "lung_tumor", [])])
    ref = compose(["experiment=lung_tumor"])
    assert lung.model == ref.model and lung.train == ref.train and lung.augment == ref.augment
    assert lung.dataset.root == str(tmp_path)
    synth = compose([*race.dataset_overrides("synthetic", tmp_path),
                     *race.recipe_overrides("reference", "synthetic", [])])
    assert synth.dataset.name == "synthetic" and (synth.model.image_height, synth.model.image_width) == (128, 128)
    assert (synth.model.base_kernels, synth.model.num_layers, synth.train.learning_rate) == (9, 8, 5e-5)
    assert synth.train == ref.train


def test_default_recipe_changes_nothing_but_the_dataset(tmp_path: Path) -> None:
    default = compose([*race.dataset_overrides("synthetic", tmp_path),
                       *race.recipe_overrides("default", "synthetic", [])])
    plain = compose([])
    assert default.model == plain.model and default.train == plain.train and default.augment == plain.augment
    variant = compose(race.recipe_overrides("default", "synthetic", ["model.normalization=group"]))
    assert variant.model.normalization == Normalization.group
    with pytest.raises(ValueError, match="unknown recipe"):
        race.recipe_overrides("tuned", "synthetic", [])
    with pytest.raises(ValueError, match="unknown dataset"):
        race.dataset_overrides("lizard", tmp_path)


def test_reads_the_dice_lines_of_an_evaluation_csv(tmp_path: Path) -> None:
    path = write_table(tmp_path / "evaluation.csv", None, [
        ("loss", 0.25), ("dice_tumor", float("nan")), ("mean_foreground_dice", 0.5),
        ("mean_foreground_dice_original_size", 0.625)])
    values = race.read_evaluation(path)
    assert values[race.FIGURE] == 0.625 and values[race.MODEL_RES] == 0.5 and math.isnan(values["dice_tumor"])


def test_verdict_and_rows() -> None:
    assert race.verdict(0.7, 0.6) == "default" and race.verdict(0.5, 0.6) == "reference"
    assert race.verdict(0.5, 0.5) == "tie" and race.verdict(float("nan"), 0.0) == "reference"
    results = [race.Result("lung_tumor", "default", 0.6, 0.62, 20, 340.0, 20.0),
               race.Result("lung_tumor", "reference", 0.0, 0.0, 1, 400.0, 40.0),
               race.Result("synthetic", "default", 0.9, 0.9, 5, 330.0, 10.0)]  # no reference: no row
    rows = race.figure_rows(results)
    assert len(rows) == 1
    assert rows[0]["value"] == 0.6 and rows[0]["baseline"] == 0.0 and rows[0]["ok"] is True
    assert rows[0]["ratio"] is None  # a zero baseline has no ratio
    text = race.table(results, 300)
    assert "lung_tumor: default wins (0.6000 vs 0.0000)" in text and "synthetic:" not in text.split("\n")[-1]


def test_a_lost_race_exits_0_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    dice = {"default": 0.4, "reference": 0.5}
    monkeypatch.setattr(race, "race_one", lambda dataset, recipe, *args: race.Result(
        dataset, recipe, dice[recipe], dice[recipe], 3, 1.0, 1.0))
    out = tmp_path / "race.json"
    code = race.main(["--datasets", "synthetic", "--budget", "5", "--json", str(out), "--keep", str(tmp_path / "runs")])
    assert code == 0
    assert "synthetic: reference wins (0.4000 vs 0.5000)" in capsys.readouterr().out
    figure = json.loads(out.read_text())
    assert figure["rows"][0]["ok"] is False and figure["rows"][0]["ratio"] == pytest.approx(0.8)
    assert set(figure) == {"title", "rows", "text"}


def test_missing_shared_data_skips_lung_tumor_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "race.json"
    code = race.main(["--datasets", "lung_tumor", "--lung-root", str(tmp_path / "absent"), "--json", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["rows"] == []
    assert "lung_tumor skipped" in capsys.readouterr().out


def test_a_failed_run_exits_nonzero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> float:
        raise race.RaceError("flexseg exited 1")

    monkeypatch.setattr(race, "flexseg", fail)
    assert race.main(["--datasets", "synthetic", "--recipes", "default", "--keep", str(tmp_path)]) == 1
