"""The optional ONNX form (`pip install -e '.[onnx]'`): converted by Keras, kept only when ONNX Runtime agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, compose

from flexseg.export import onnx


@pytest.fixture(scope="module")
def tiny_model():  # type: ignore[no-untyped-def]
    import keras

    from flexseg.models.registry import build_model

    keras.utils.set_random_seed(0)
    return build_model(compose(TINY).model)


def test_onnx_matches_keras_when_the_extra_is_installed(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    difference = onnx.write_onnx(tiny_model, tmp_path / "model.onnx")
    assert difference is not None and difference <= onnx.TOLERANCE
    assert (tmp_path / "model.onnx").stat().st_size > 1000


def test_without_the_extra_no_file_and_no_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(onnx, "onnx_available", lambda: False)
    assert onnx.write_onnx(object(), tmp_path / "model.onnx") is None  # type: ignore[arg-type]
    assert not (tmp_path / "model.onnx").exists()
