"""A full disk (simulated ENOSPC, so it runs everywhere): the previous checkpoint stays whole and loadable,
outputs are written whole or not at all, and the error names the file and the free space."""

from __future__ import annotations

import errno
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from flexseg import storage
from flexseg.errors import FlexsegError
from flexseg.inference.sinks import TiffSink
from flexseg.reporting import viz
from flexseg.reporting.tables import write_table
from flexseg.training.callbacks import TrainingState, read_state, write_state
from flexseg.training.callbacks.state import commit_files
from flexseg.training.callbacks.writer import ModelSnapshot

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _only_final_files(folder: Path, names: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == names  # no temp file left to fill the disk


def _full_disk_message(err: FlexsegError, path: Path) -> None:
    text = str(err)
    assert f"'{path}'" in text and "no space left on the device" in text and " free there)" in text, text


def test_disk_full_while_committing_an_epoch_keeps_the_previous_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, model = tmp_path / "checkpoints", _model()
    commit_files(ModelSnapshot.capture(model), ckpt, TrainingState(epoch=1), best=ckpt / "best.keras")
    epoch_1 = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in epoch_1])
    writestr = zipfile.ZipFile.writestr

    def full(self, name, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "model.weights.h5":  # the disk fills up in the middle of the file
            raise ENOSPC
        return writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    with pytest.raises(FlexsegError) as info:
        commit_files(ModelSnapshot.capture(model), ckpt, TrainingState(epoch=2), best=ckpt / "best.keras")
    _full_disk_message(info.value, ckpt / ".last_epoch_0002.keras")
    assert "train.resume=auto" in str(info.value)
    assert read_state(ckpt / "state.json").epoch == 1
    for name in ("last.keras", "best.keras"):
        for got, want in zip(keras.models.load_model(ckpt / name, compile=False).get_weights(), epoch_1):
            np.testing.assert_array_equal(got, want)
    _only_final_files(ckpt, {".last_epoch_0001.keras", "best.keras", "last.keras", "state.json"})


def test_disk_full_while_writing_the_state_keeps_the_previous_state(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_state(tmp_path / "state.json", TrainingState(epoch=3))

    def full(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ENOSPC

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(FlexsegError) as info:
        write_state(path, TrainingState(epoch=4))
    _full_disk_message(info.value, path)
    monkeypatch.undo()
    assert read_state(path).epoch == 3
    _only_final_files(tmp_path, {"state.json"})


class _FullFile:
    """A file opened for writing on a full disk: every write fails."""

    def __init__(self, handle) -> None:  # type: ignore[no-untyped-def]
        self.handle = handle

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        raise ENOSPC

    def __enter__(self) -> "_FullFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.handle, name)


def test_disk_full_while_writing_a_mask_or_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mask = viz.write_rgb(tmp_path / "mask.png", np.zeros((8, 8, 3), np.uint8))
    before = mask.read_bytes()
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, mode, *args, **kwargs)
        return _FullFile(handle) if "w" in mode else handle

    monkeypatch.setattr(storage, "open", full_open, raising=False)
    with pytest.raises(FlexsegError) as info:
        viz.write_rgb(mask, np.full((8, 8, 3), 255, np.uint8))
    _full_disk_message(info.value, mask)
    assert mask.read_bytes() == before
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: full_open(self, *a, **k))
    with pytest.raises(FlexsegError) as info:
        write_table(tmp_path / "scores.csv", ["a"], [[1.0]])
    _full_disk_message(info.value, tmp_path / "scores.csv")
    _only_final_files(tmp_path, {"mask.png"})


def test_disk_full_while_streaming_a_tiff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    def full(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        for _ in kwargs["data"]:  # consume a tile, as the writer does, then the disk is full
            raise ENOSPC

    monkeypatch.setattr(tifffile.TiffWriter, "write", full)
    sink = TiffSink(tmp_path / "mask.tif", 64, 64, tile=16)
    with pytest.raises(FlexsegError) as info:
        for _ in range(4):
            sink.write_rows(np.zeros((16, 64, 3), np.uint8))
        sink.close()
    _full_disk_message(info.value, tmp_path / "mask.tif")
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_free_space_is_reported_for_a_folder_still_to_be_made(tmp_path: Path) -> None:
    assert storage.free_space(tmp_path / "not" / "yet").endswith(" free")
    assert storage.format_bytes(1536) == "1.5 KiB" and storage.format_bytes(10) == "10 B"
