"""`ckpt` files that are not models get one short message naming what they are."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from conftest import TINY, run_cli

from flexseg.errors import FlexsegError
from flexseg.inference.checkpoint import describe_file, load_model_file


def _tiny_model(path: Path) -> Path:
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs)).save(path)
    return path


@pytest.mark.parametrize("write, expected", [
    (lambda p: cv2.imwrite(str(p), np.zeros((4, 4, 3), np.uint8)) and None, "is a PNG image, not a Keras model"),
    (lambda p: p.write_text("hello"), "is a file of unknown type, not a Keras model"),
    (lambda p: p.write_bytes(b""), "is an empty file"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 40), "damaged or truncated zip archive"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "x"), "zip archive without a Keras model config"),
])
def test_a_file_that_is_not_a_model_is_named(tmp_path: Path, write, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "model.keras"
    if expected.startswith("is a PNG"):
        path = tmp_path / "picture.png"
    write(path)
    with pytest.raises(FlexsegError, match=expected) as info:
        load_model_file(path)
    message = str(info.value)
    assert str(path) in message and "runs:/<run_id> or latest" in message
    assert "\n" not in message and len(message) < 400  # one short paragraph, not Keras's


def test_a_real_model_loads_and_folders_are_named(tmp_path: Path) -> None:
    model = load_model_file(_tiny_model(tmp_path / "good.keras"))
    assert model.output_shape == (None, 8, 8, 2)
    assert describe_file(tmp_path) == "a folder"
    with pytest.raises(FlexsegError, match="no such file or folder"):
        load_model_file(tmp_path / "missing.keras")


def test_cli_with_a_png_as_ckpt_says_so_in_one_line(tmp_path: Path) -> None:
    picture = tmp_path / "slide.png"
    cv2.imwrite(str(picture), np.zeros((4, 4, 3), np.uint8))
    proc = run_cli([*TINY, "mode=infer", f"ckpt={picture}", f"dataset.root={tmp_path}/synthetic",
                    f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run"],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert f"ckpt='{picture}' is a PNG image, not a Keras model" in proc.stderr
    assert "Traceback" not in proc.stderr and "TFSMLayer" not in proc.stderr
