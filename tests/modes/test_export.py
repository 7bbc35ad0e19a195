"""`mode=export` / `train.export=true` on a tiny trained run: SavedModel + MLflow model + model card; the MLflow
model predicts what `mode=infer` and `mode=tiled` write; the registry and `ckpt=models:/...`; and the MLflow
model served by `mlflow models serve` (slow)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY, compose
from mlflow_server import free_ports

from flexseg.cli import RunContext
from flexseg.errors import FlexsegError
from flexseg.modes import evaluate, export, infer, tiled, train

SERVE_STARTUP_S = 180  # the server imports MLflow and TensorFlow, then loads the model (busy 2-core machine)


def _store(tmp: Path) -> list[str]:
    return [*TINY, f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"dataset.root={tmp}/synthetic",
            "tracking.experiment=export", "callbacks=minimal", "tracking.register_as=tiny"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """One epoch of training with train.export=true (registered as version 1), then mode=export (version 2)."""
    import mlflow

    tmp = tmp_path_factory.mktemp("export")
    overrides = [*_store(tmp), "train.epochs=1", "train.export=true"]
    cfg = compose(overrides)
    results = train.run(cfg, RunContext(tmp / "train", overrides, ""))
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    (run,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.mode = 'train'", output_format="list")
    again = export.run(compose([*_store(tmp), "mode=export"]), RunContext(tmp / "export_call", ["mode=export"], ""))
    return {"tmp": tmp, "run_id": run.info.run_id, "train": results, "export": again}


def _labels(mask_png: Path, palette: np.ndarray) -> np.ndarray:
    """A colour mask as written by infer/tiled -> (H, W) class indices."""
    rgb = cv2.imread(str(mask_png))[..., ::-1].astype(np.int32)
    return np.argmin(((rgb[:, :, None, :] - palette[None, None].astype(np.int32)) ** 2).sum(-1), axis=-1)


def _palette(cfg) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray([c.display_color or c.color for c in cfg.dataset.classes])


def test_train_export_and_mode_export_write_the_three_forms(trained: dict) -> None:  # type: ignore[type-arg]
    import mlflow
    import tensorflow as tf

    tmp, run_id = trained["tmp"], trained["run_id"]
    assert trained["train"]["registered_version"] == 1.0 and trained["export"]["registered_version"] == 2.0
    folder = tmp / "train" / "export"  # beside checkpoints/best.keras, replaced whole by the second export
    names = {p.name for p in folder.iterdir()}  # model.onnx too with the `onnx` extra installed
    assert names - {"model.onnx"} == {"README.md", "mlflow_model", "model_card.json", "saved_model"}
    assert not [p for p in (tmp / "train").iterdir() if p.name.startswith(".export")]  # no temp folder left
    card = json.loads((folder / "model_card.json").read_text())
    assert [c["name"] for c in card["classes"]] == ["background", "disk", "square", "triangle"]
    assert card["input"] == {"height": 32, "width": 32, "channels": 3}
    assert card["training_data"]["pairs"] == {"train": 8, "valid": 4, "test": 4}
    assert card["tiling"]["tile_size"] == 32 and card["tiling"]["overlap"] == 8
    assert card["mlflow_run_id"] == run_id and card["flexseg"]
    assert "| 1 | disk | (255, 0, 0) |" in (folder / "README.md").read_text()

    saved = tf.saved_model.load(str(folder / "saved_model"))
    image = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    probs = saved.serve_uint8(tf.constant(image)).numpy()
    np.testing.assert_allclose(probs, saved.serve(tf.constant(image / 255.0, tf.float32)).numpy(), atol=1e-5)
    assert probs.shape == (2, 32, 32, 4)

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    client = mlflow.tracking.MlflowClient()
    assert client.get_run(run_id).info.status == "FINISHED"  # logged into, never reopened
    assert {"model", "export"} <= {a.path for a in client.list_artifacts(run_id)}
    children = client.search_runs([client.get_run(run_id).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{run_id}' and tags.mode = 'export'")
    assert len(children) == 2 and all(c.data.tags["model_uri"] == f"runs:/{run_id}/model" for c in children)


def test_mlflow_model_predicts_what_tiled_and_infer_write(trained: dict) -> None:  # type: ignore[type-arg]
    import mlflow
    import pandas as pd

    tmp, run_id = trained["tmp"], trained["run_id"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    cfg = compose([*_store(tmp), "mode=tiled"])
    tiled.run(cfg, RunContext(tmp / "tiled", [], ""))
    large = tmp / "synthetic" / "large" / "images" / "large_00.png"
    pixels = cv2.imread(str(large))[..., ::-1]
    labels = model.predict(pixels)  # 96x96: larger than the 32x32 model, so tiled
    assert labels.shape == (96, 96) and labels.dtype == np.uint8
    expected = _labels(tmp / "tiled" / "tiled" / "masks" / "large_00.png", _palette(cfg))
    assert np.mean(labels == expected) >= 0.999

    infer.run(compose([*_store(tmp), "mode=infer"]), RunContext(tmp / "infer", [], ""))
    tests = sorted((tmp / "synthetic" / "test" / "images").iterdir())
    frame = pd.DataFrame({"image": [p.read_bytes() for p in tests]})
    batch = model.predict(frame)
    for path, got in zip(tests, batch):
        assert np.array_equal(got, _labels(tmp / "infer" / "infer" / "masks" / f"{path.stem}.png", _palette(cfg)))
    probs = model.predict(frame.assign(image=[base64.b64encode(b).decode() for b in frame["image"]]),
                          params={"output": "probabilities"})
    assert probs.shape == (len(tests), 32, 32, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_registered_versions_load_as_ckpt(trained: dict) -> None:  # type: ignore[type-arg]
    import mlflow

    tmp, run_id = trained["tmp"], trained["run_id"]
    overrides = [*_store(tmp), "mode=eval", "ckpt=models:/tiny/1"]
    results = evaluate.run(compose(overrides), RunContext(tmp / "eval", overrides, ""))
    assert 0.0 <= results["mean_foreground_dice"] <= 1.0
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    client = mlflow.tracking.MlflowClient()
    (child,) = client.search_runs([client.get_run(run_id).info.experiment_id], filter_string="tags.mode = 'eval'")
    assert child.data.tags["mlflow.parentRunId"] == run_id  # the registered model's training run
    client.set_registered_model_alias("tiny", "champion", "2")
    from flexseg.modes.common import resolve_checkpoint

    checkpoints, found = resolve_checkpoint("models:/tiny@champion", "", "export")
    (path,) = checkpoints.values()
    assert path.name == "model.keras" and path.is_file() and found == run_id
    for bad, match in (("models:/tiny/9", "has versions 1, 2"), ("models:/nope/1", "no versions"),
                       ("models:/tiny@nope", "has versions 1, 2")):
        with pytest.raises(FlexsegError, match=match):
            resolve_checkpoint(bad, "", "export")


def _post(url: str, body: dict, timeout: float) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_infer_labels(trained: dict) -> None:  # type: ignore[type-arg]
    """`mlflow models serve -m runs:/<id>/model --env-manager local`, a base64 PNG in JSON `inputs`."""
    tmp, run_id = trained["tmp"], trained["run_id"]
    if not (tmp / "infer").is_dir():
        infer.run(compose([*_store(tmp), "mode=infer"]), RunContext(tmp / "infer", [], ""))
    port = free_ports()[0]
    log = tmp / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # it runs `uvicorn`
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_id}/model", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=tmp,
        )
    try:
        deadline = time.monotonic() + SERVE_STARTUP_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        image = sorted((tmp / "synthetic" / "test" / "images").iterdir())[0]
        answer = _post(f"http://127.0.0.1:{port}/invocations",
                       {"inputs": {"image": [base64.b64encode(image.read_bytes()).decode()]}}, timeout=60)
        labels = np.asarray(answer["predictions"])
        expected = _labels(tmp / "infer" / "infer" / "masks" / f"{image.stem}.png", _palette(compose(_store(tmp))))
        assert labels.shape == (1, 32, 32) and np.array_equal(labels[0], expected)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
