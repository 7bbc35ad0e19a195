"""Where an export goes, and that it replaces an earlier one only whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from flexseg.export import bundle
from flexseg.export.card import read_evaluation_csv


def test_export_goes_beside_a_training_runs_checkpoint_else_into_this_calls_run_dir(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(bundle, "ensemble_members", lambda m: [m, m] if m.name == "fold_ensemble" else [])
    model = SimpleNamespace(name="unet")
    train = tmp_path / "train"
    (train / "checkpoints").mkdir(parents=True)
    (train / "config.yaml").write_text("mode: train\n")
    here = tmp_path / "this_call"
    assert bundle.export_folder(train / "checkpoints" / "best.keras", model, here) == train / "export"
    download = tmp_path / "download" / "checkpoints" / "best.keras"  # fetched from MLflow: no config.yaml
    assert bundle.export_folder(download, model, here) == here / "export"
    assert bundle.export_folder(tmp_path / "model.keras", model, here) == here / "export"
    ensemble = SimpleNamespace(name="fold_ensemble")  # fold models of several runs: no one run dir
    assert bundle.export_folder(train / "checkpoints" / "best.keras", ensemble, here) == here / "export"


def test_replacing_keeps_the_old_folder_until_the_new_one_is_in_place(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new = tmp_path / ".export-new"
    new.mkdir()
    (new / "new.txt").write_text("new")
    bundle._replace_folder(new, target)
    assert [p.name for p in tmp_path.iterdir()] == ["export"] and (target / "new.txt").is_file()

    failing = tmp_path / ".export-failing"  # the new folder cannot be moved in: the earlier export stays
    failing.mkdir()
    rename = Path.rename

    def refuse(self: Path, to: Path) -> Path:
        if self == failing:
            raise OSError("disk full")
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(OSError, match="disk full"):
        bundle._replace_folder(failing, target)
    assert (target / "new.txt").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [".export-failing", "export"]


def test_evaluation_csv_lines_become_scores(tmp_path: Path) -> None:
    (tmp_path / "evaluation.csv").write_text("loss,0.25\nmean_foreground_dice,0.9\n")
    assert read_evaluation_csv(tmp_path / "evaluation.csv") == {"loss": 0.25, "mean_foreground_dice": 0.9}
    assert read_evaluation_csv(tmp_path / "missing.csv") == {}
