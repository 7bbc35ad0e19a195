"""A really full disk (a small tmpfs; root only, else skipped): training keeps its last committed epoch and
resumes once there is space; infer and tiled outputs are whole or absent; exit 2 naming the file and free space."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import keras
import numpy as np
import pytest
from conftest import TINY, compose, run_cli
from disk import fill, mount_small_disk
from omegaconf import OmegaConf
from tiny_model import build_model_data, mode_overrides

from flexseg.context import RunContext
from flexseg.errors import FlexsegError
from flexseg.inference.sinks import TiffSink
from flexseg.modes import train
from flexseg.reporting import viz
from flexseg.training.callbacks import EpochRecorder, read_state


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mount_small_disk(tmp_path / "small_disk", "4m")


def _hidden_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if p.is_file() and not p.name.startswith(".last_epoch_")]


def test_a_full_disk_keeps_the_last_commit_and_resume_continues(tmp_path: Path, small_disk: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic",
                 "tracking.experiment=disk", *TINY, "callbacks=minimal", "train.epochs=2"]
    run_dir, filler = small_disk / "run", []
    state_file = run_dir / "checkpoints" / "state.json"
    epoch_begin = EpochRecorder.on_epoch_begin

    def fill_in_epoch_2(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        if epoch == 1:
            self.writer.flush()  # epoch 1 is committed and published (CSV, MLflow)
            filler.append(fill(small_disk))
        epoch_begin(self, epoch, logs)

    monkeypatch.setattr(EpochRecorder, "on_epoch_begin", fill_in_epoch_2)
    cfg = compose(overrides)
    yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    with pytest.raises(FlexsegError) as info:
        train.run(cfg, RunContext(run_dir, overrides, yaml))
    message = str(info.value)  # the first write of epoch 2 that failed: its CSV log or its checkpoint
    assert f"Cannot write '{run_dir}/" in message and "no space left on the device" in message
    assert " free there)" in message and "train.resume=auto" in message
    state = read_state(state_file)
    assert (state.epoch, state.finished) == (1, False)
    for name in ("last.keras", "best.keras"):
        keras.models.load_model(run_dir / "checkpoints" / name, compile=False)
    deadline = time.monotonic() + 60  # the background commit of epoch 2 fails too, removing its temp file
    while _hidden_files(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _hidden_files(run_dir) == []

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("disk").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    filler[0].unlink()  # space again: continue the same run
    monkeypatch.undo()
    resumed = [*overrides, "train.resume=auto"]
    assert train.run(compose(resumed), RunContext(tmp_path / "resumed", resumed, yaml))["epochs"] == 2
    assert read_state(state_file).finished
    assert [r.info.status for r in client.search_runs([runs[0].info.experiment_id])] == ["FINISHED"]


def test_a_mask_or_tiff_on_a_full_disk_is_whole_or_absent(small_disk: Path) -> None:
    mask = viz.write_rgb(small_disk / "mask.png", np.zeros((16, 16, 3), np.uint8))
    before = mask.read_bytes()
    fill(small_disk, leave=1024)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # ~200 KB of PNG
    with pytest.raises(FlexsegError, match=r"mask\.png': no space left on the device \(.* free there\)"):
        viz.write_rgb(mask, noise)
    assert mask.read_bytes() == before
    sink = TiffSink(small_disk / "tiled.tif", 512, 512)
    with pytest.raises(FlexsegError, match=r"tiled\.tif': no space left on the device"):
        for _ in range(8):
            sink.write_rows(noise[:64].repeat(2, axis=1))
        sink.close()
    sink.abort()
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin", "mask.png"]


@pytest.fixture(scope="module")
def model_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_data(tmp_path_factory.mktemp("disk_full"))


@pytest.mark.parametrize("mode", ["infer", "tiled"])
def test_cli_on_a_full_disk_exits_2_naming_the_file_and_free_space(model_data: Path, tmp_path: Path,
                                                                   small_disk: Path, mode: str) -> None:
    key = "infer" if mode == "infer" else "tiling"
    out = small_disk / "out"
    (out / "masks").mkdir(parents=True)
    fill(small_disk)
    args = mode_overrides(model_data, tmp_path, mode, f"{key}.output_dir={out}", f"hydra.run.dir={tmp_path}/run")
    proc = run_cli(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"flexseg: error: Cannot write '{out}/masks/" in proc.stderr, proc.stderr[-3000:]
    assert "no space left on the device" in proc.stderr and "free there)" in proc.stderr
    assert list((out / "masks").iterdir()) == []
