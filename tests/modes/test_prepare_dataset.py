"""No silent fallback to synthetic data: it is generated only at its cache or where `dataset=synthetic` is chosen."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, compose, run_cli

from flexseg.data.synthetic import MARKER
from flexseg.errors import FlexsegError
from flexseg.modes.common import prepare_dataset

DEFAULT = [o for o in TINY if o != "dataset=synthetic"]  # the same sizes, no dataset chosen


def test_own_root_without_a_chosen_dataset_stops_and_writes_nothing(tmp_path: Path) -> None:
    cfg = compose([*DEFAULT, f"dataset.root={tmp_path / 'my_data'}"])
    with pytest.raises(FlexsegError, match=r"no dataset is chosen.*dataset=NAME.*--config-dir DIR dataset=NAME"):
        prepare_dataset(cfg.dataset)
    assert not (tmp_path / "my_data").exists()


def test_own_classes_without_a_chosen_dataset_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = compose([*DEFAULT, "dataset.classes=[{name: bg, color: [0,0,0]}, {name: cell, color: [255,255,255]}]"])
    with pytest.raises(FlexsegError, match="dataset.classes lists 2 classes, but no dataset is chosen"):
        prepare_dataset(cfg.dataset)
    assert not (tmp_path / "data").exists()


def test_default_dataset_still_generates_into_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # `make demo`: no dataset chosen, root data/synthetic
    demo = compose(["experiment=demo"]).dataset
    assert (demo.name, demo.root, demo.synthetic.cache_root) == ("synthetic", "data/synthetic", "data/synthetic")
    cfg = compose(DEFAULT)
    assert cfg.dataset.root == "data/synthetic" and cfg.dataset.synthetic.cache_root == "data/synthetic"
    prepare_dataset(cfg.dataset)
    assert (tmp_path / "data" / "synthetic" / MARKER).is_file()


def test_chosen_synthetic_dataset_generates_into_a_new_folder_but_not_over_data(tmp_path: Path) -> None:
    cfg = compose([*TINY, f"dataset.root={tmp_path / 'synth'}"])
    prepare_dataset(cfg.dataset)
    assert len(list((tmp_path / "synth" / "train" / "images").iterdir())) == 8
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "image.png").write_bytes(b"x")
    cfg = compose([*TINY, f"dataset.root={tmp_path / 'other'}"])
    with pytest.raises(FlexsegError, match="not a synthetic dataset folder"):
        prepare_dataset(cfg.dataset)


@pytest.mark.slow
def test_cli_stops_on_own_root_with_the_default_dataset(tmp_path: Path) -> None:
    proc = run_cli([*DEFAULT, f"dataset.root={tmp_path / 'my_data'}", "train.epochs=1",
                    f"tracking.uri=sqlite:///{tmp_path}/m.db", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no dataset is chosen" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "my_data").exists()
