"""The optional ONNX form of an export, written when the `onnx` extra is installed (`pip install -e '.[onnx]'`).

Keras's own `model.export(format="onnx")` (tf2onnx underneath), kept only when ONNX Runtime gives
Keras's probabilities back on a random batch (max |difference| <= `TOLERANCE`). Measured with
tf2onnx 1.17.0, onnx 1.23.2 and onnxruntime 1.32.0 on TensorFlow 2.21 / Keras 3.15: a FlexUNet with
instance normalisation converts in ~3.5 CPU-s, max |difference| 4e-6, labels identical. Fixed input
height and width (the model's), any batch size; the input is the preprocessed float32 model input.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import keras
import numpy as np

from flexseg.inference.predict import input_size

log = logging.getLogger(__name__)
TOLERANCE = 1e-4
PACKAGES = ("tf2onnx", "onnx", "onnxruntime")


def onnx_available() -> bool:
    """Whether the `onnx` extra is installed (found without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES)


def write_onnx(model: keras.Model, path: Path) -> Optional[float]:
    """Convert `model` to `path` and check it with ONNX Runtime.

    Returns:
        The max |probability difference| to Keras on a random (2, h, w, C) batch; None when the extra
        is not installed, the conversion fails or the difference exceeds `TOLERANCE` (no file then).
    """
    if not onnx_available():
        return None
    import onnxruntime

    h, w, c = input_size(model)
    images = np.random.default_rng(0).random((2, h, w, c), dtype=np.float32)
    expected = np.asarray(model(images, training=False))  # export(format="onnx") needs a called model
    try:
        model.export(str(path), format="onnx", verbose=False)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: images})[0]
    except Exception as err:  # tf2onnx and onnxruntime raise many types for an op they do not support
        log.warning("no model.onnx: the ONNX conversion failed (%s); the other forms are exported",
                    str(err).splitlines()[0][:200] if str(err) else type(err).__name__)
        path.unlink(missing_ok=True)
        return None
    diff = float(np.abs(got - expected).max())
    if diff > TOLERANCE:
        log.warning("no model.onnx: ONNX Runtime's probabilities differ from Keras's by up to %.2g (> %g)", diff,
                    TOLERANCE)
        path.unlink()
        return None
    log.info("model.onnx: ONNX Runtime matches Keras within %.2g", diff)
    return diff
