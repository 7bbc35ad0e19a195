"""`flexseg mode=stats`: the full check a user runs before training; real data when ../shared is there."""

from __future__ import annotations

import csv
import logging
import shutil
import sys
from pathlib import Path

import pytest
from conftest import compose, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
from bad_data import build_bad_dataset  # noqa: E402

pytestmark = pytest.mark.slow


def _user_dataset(tmp_path: Path, root: Path, classes: str) -> list[str]:
    conf = tmp_path / "conf" / "dataset"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "mine.yaml").write_text(f"name: mine\nroot: {root}\nclasses:\n{classes}")
    return ["--config-dir", str(tmp_path / "conf"), "dataset=mine", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]


RED = "  - {name: background, color: [0, 0, 0]}\n  - {name: lesion, color: [255, 0, 0]}\n"


def test_stats_lists_every_bad_file_and_exits_nonzero(tmp_path: Path) -> None:
    expected = build_bad_dataset(tmp_path / "bad")
    proc = run_cli([*_user_dataset(tmp_path, tmp_path / "bad", RED), "mode=stats", "stats.splits=[train]",
                    f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for case, name in {**expected, "unmatched-colors": "purple.png"}.items():
        assert name in proc.stderr, f"{case}: {name} missing from\n{proc.stderr}"
    assert "(200, 0, 200)" in proc.stderr  # the offending colour is shown
    with (tmp_path / "run" / "stats" / "problems.csv").open() as fh:
        kinds = {row["kind"] for row in csv.DictReader(fh)}
    assert {"unmatched-colors", "truncated", "too-large", "empty-file", "size-mismatch"} <= kinds
    assert (tmp_path / "run" / "stats" / "class_stats.png").is_file()


def _run(mode: str, overrides: list[str], run_dir: Path) -> dict[str, float]:
    """A mode in this process (the CLI's ~10 s of imports saved; its exit and messages: the test above)."""
    from omegaconf import OmegaConf

    from flexseg.context import RunContext
    from flexseg.modes import stats, train

    cfg = compose(overrides)
    runner = stats if mode == "stats" else train
    return runner.run(cfg, RunContext(run_dir, overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))


def test_stats_on_real_lizard_and_lung_tumor(tmp_path: Path, shared_data: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flexseg.modes.stats")
    results = _run("stats", ["dataset=lizard", f"dataset.root={shared_data / 'lizard_mini'}", "mode=stats",
                             f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"], tmp_path / "lizard")
    with (tmp_path / "lizard" / "stats" / "stats.csv").open() as fh:
        train = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    assert [r["class"] for r in train] == ["background", "consep", "crag", "dpath", "glas", "pannuke"]
    assert all(float(r["pixel_fraction"]) > 0 for r in train)  # all five foreground classes present in train
    assert results["problems"] == 0
    for split in ("train", "valid", "test"):
        assert any(m.startswith(f"{split}: ") and "unmatched mask pixels 0" in m for m in caplog.messages), split
    _run("stats", ["dataset=lung_tumor", f"dataset.root={shared_data / 'lung_tumor_mini'}", "mode=stats",
                   f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"], tmp_path / "lung")
    with (tmp_path / "lung" / "stats" / "stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["class"] for r in rows} == {"background", "tumor"}
    assert all(int(r["pixels"]) > 0 for r in rows if r["split"] == "train")


def test_per_class_subfolder_copy_trains_one_epoch(tmp_path: Path, shared_data: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    src = shared_data / "lizard_mini"
    root = tmp_path / "per_class"
    for split in ("train", "valid", "test"):
        for image in sorted((src / split / "images").iterdir()):
            cls = image.stem.split("_")[-2]  # rotated_90_crag_50 -> crag, glas_34 -> glas
            for kind in ("images", "masks"):
                dst = root / split / cls / kind
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / split / kind / image.name, dst / image.name)
    caplog.set_level(logging.INFO, logger="flexseg.modes.train")
    _run("train", ["dataset=lizard", f"dataset.root={root}", "model.image_height=64", "model.image_width=64",
                   "model.num_layers=3", "model.base_filters=4", "train.epochs=1", "train.batch_size=4",
                   "train.optimizer=sgd", "callbacks=minimal", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
         tmp_path / "run")
    assert any("20 train / 6 valid pairs" in m for m in caplog.messages)
    assert (tmp_path / "run" / "checkpoints" / "best.keras").is_file()
