"""Data errors in every mode: a clean exit 2 with the message (no abort), and pre-flight checks of infer/tiled inputs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, TINY, compose, run_cli

# A built-in dataset without synthetic data (black background, white tumour), shrunk to a CPU test.
SMALL = ["dataset=lung_tumor", *(o for o in TINY if o.startswith(("model.", "train.", "tiling.")))]
MAGENTA = (255, 0, 255)  # no class colour and no blend of black and white


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: its header reads, its pixels end in libjpeg's grey fill."""
    jpg = cv2.imencode(".jpg", np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpg[: len(jpg) // 2])
    return path


def _corrupt_png(path: Path) -> Path:
    """A PNG with intact header and end marker but damaged pixel data: only decoding finds it."""
    png = bytearray(cv2.imencode(".png", np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8))[1])
    start = png.index(b"IDAT") + 8
    png[start : start + 64] = bytes(64)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(png))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/valid/test 32 px pairs (one foreign-coloured mask in train and in test), folders of
    infer/tiled inputs with a bad file each, and a random-weight checkpoint `tiny.keras`."""
    import keras

    from flexseg.models.registry import build_model

    root = tmp_path_factory.mktemp("data_errors")
    rng = np.random.default_rng(0)
    # Many pairs behind the bad one, larger than the model: reads still in flight when the error stops the mode.
    for split, count, size in (("train", 160, 96), ("valid", 4, 32), ("test", 160, 96)):
        for i in range(count):
            mask = np.zeros((size, size, 3), np.uint8)
            mask[8:20, 8:20] = 255
            if split != "valid" and i == 9:
                mask[:, :] = MAGENTA
            _write(root / split / "images" / f"p{i:03d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            _write(root / split / "masks" / f"p{i:03d}.png", mask)
    for name in ("infer", "tiled"):
        _write(root / name / "good.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        _truncated_jpeg(root / name / "cut.jpg")
    _write(root / "decode" / "good.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    _corrupt_png(root / "decode" / "damaged.png")
    keras.utils.set_random_seed(0)
    build_model(compose([*SMALL, f"dataset.root={root}"]).model).save(root / "tiny.keras")
    return root


def _overrides(root: Path, tmp_path: Path, *more: str) -> list[str]:
    return [*SMALL, f"dataset.root={root}", f"ckpt={root / 'tiny.keras'}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"hydra.run.dir={tmp_path}/run", *more]


# A mode whose tf.data readers are still busy when a data error stops it, its iterator held in a
# reference cycle as Keras's epoch iterators hold theirs (freed by the garbage collector only).
BUSY_MODE = """
import sys, time
import numpy as np
import tensorflow as tf
from flexseg.errors import ERROR_MARKER, FlexsegError

def read(i):
    if i == 0:
        raise FlexsegError(ERROR_MARKER + "'bad.png': a data error")
    time.sleep(0.2)
    return np.float32(i)

class Epochs:
    def __init__(self, ds):
        self.me, self.iterator = self, iter(ds)

def run(cfg, ctx):
    ds = tf.data.Dataset.range(1000).map(lambda i: tf.numpy_function(read, [i], tf.float32), num_parallel_calls=8)
    for _ in Epochs(ds.prefetch(8)).iterator:
        pass

sys.modules["flexseg.modes.evaluate"] = sys.modules[__name__]
from flexseg.cli import main
sys.argv = ["flexseg", "mode=eval", "hydra.run.dir=" + sys.argv[1]]
main()
"""


def test_exit_after_a_data_error_frees_busy_tf_data_readers_first(tmp_path: Path) -> None:
    """Issue 11: the iterator outlived the mode and was torn down with the interpreter while its
    readers still ran: exit 134 ("terminate called without an active exception") or a hang."""
    script = tmp_path / "busy_mode.py"
    script.write_text(BUSY_MODE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("flexseg hung after a data error instead of exiting")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "flexseg: error: 'bad.png': a data error" in proc.stderr and "terminate called" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "more", "named"), [
    ("train", ["train.epochs=1"], "train/masks/p009.png"),
    ("eval", [], "test/masks/p009.png"),
    ("infer", ["infer.images_dir={root}/decode"], "damaged.png"),  # found only when decoded, inside tf.data
    ("tiled", ["tiling.images_dir={root}/tiled"], "cut.jpg"),  # found by the pre-flight check
])
def test_a_data_error_exits_2_cleanly_in_every_mode(data: Path, tmp_path: Path, mode: str, more: list[str],
                                                     named: str) -> None:
    """Issue 11: eval printed the message, then aborted (exit 134, "terminate called without an active
    exception") as tf.data threads outlived the interpreter; infer's decode error was a traceback."""
    started = time.perf_counter()
    proc = run_cli([*_overrides(data, tmp_path, f"mode={mode}", *(m.format(root=data) for m in more))], cwd=tmp_path,
                   check=False)
    logging.getLogger(__name__).info("flexseg mode=%s: %.1f s", mode, time.perf_counter() - started)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "flexseg: error:" in proc.stderr and named in proc.stderr
    if mode in ("train", "eval"):
        assert "(255, 0, 255) x 9,216" in proc.stderr and "dataset.max_unmatched" in proc.stderr


@pytest.mark.parametrize("mode", ["infer", "tiled"])
def test_truncated_inputs_of_infer_and_tiled_are_checked_first(data: Path, tmp_path: Path, mode: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11: a truncated JPEG became a mask with a grey strip; now `dataset.on_bad_file` decides."""
    from flexseg.context import RunContext
    from flexseg.data.discovery import DataProblemsError
    from flexseg.modes import infer, tiled

    runner, key = (infer, "infer") if mode == "infer" else (tiled, "tiling")
    overrides = _overrides(data, tmp_path, f"mode={mode}", f"{key}.images_dir={data / mode}",
                           f"{key}.output_dir={tmp_path / 'out'}")
    with pytest.raises(DataProblemsError) as info:
        runner.run(compose(overrides), RunContext(tmp_path / "run"))
    assert "cut.jpg" in str(info.value) and "truncated" in str(info.value) and "on_bad_file=skip" in str(info.value)
    assert not (tmp_path / "out").exists()  # stopped before any prediction

    caplog.set_level(logging.WARNING)
    results = runner.run(compose([*overrides, "dataset.on_bad_file=skip"]), RunContext(tmp_path / "run"))
    assert results["images"] == 1.0
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["good.png"]
    assert "cut.jpg" in caplog.text and "on_bad_file=skip" in caplog.text
