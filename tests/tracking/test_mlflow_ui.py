"""What a user sees in the MLflow UI after a training + eval, checked through the UI server's REST API.

`mlflow server` (what `make ui` starts) runs on a free 127.0.0.1 port against the test's store; the
assertions read what its pages read: the experiment's kind tag, the run names, the epoch images.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import TINY, compose, seed_store
from mlflow_server import MlflowServer
from omegaconf import OmegaConf

from flexseg import tracking
from flexseg.context import RunContext

EXPERIMENT = "uicheck"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the test's MLflow store, its (empty) SQLite file already made."""
    tmp = tmp_path_factory.mktemp("ui")
    seed_store([f"tracking.uri=sqlite:///{tmp}/mlflow.db"])
    return tmp


def _train_and_eval(tmp: Path) -> None:
    """A tiny training (1 epoch, epoch pictures on) and an eval of it, as two CLI calls would log them."""
    from flexseg.modes import evaluate, train

    base = [*TINY, f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"dataset.root={tmp}/synthetic",
            f"tracking.experiment={EXPERIMENT}", "callbacks.plots=false"]
    user = ["train.learning_rate=0.002", "train.epochs=1"]  # what the user typed besides the paths
    cfg = compose([*base, *user])
    train.run(cfg, RunContext(tmp / "train", [*user, *base], OmegaConf.to_yaml(OmegaConf.structured(cfg))))
    evaluate.run(compose([*base, "mode=eval"]), RunContext(tmp / "eval", ["mode=eval", *base], ""))


@pytest.fixture(scope="module")
def ui(store: Path) -> Iterator[str]:
    """Base URL of `mlflow server` on the store after a training and an eval; the server (its whole process
    group) is stopped after. It starts first, so that its imports overlap the training."""
    server = MlflowServer(store)
    server.start()
    try:
        _train_and_eval(store)
        server.wait()
        yield server.url
    finally:
        server.kill(signal.SIGTERM)


def _get(url: str, endpoint: str, query: dict[str, str]) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}{endpoint}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _experiment(url: str) -> dict[str, Any]:
    return _get(url, "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": EXPERIMENT})["experiment"]


def _runs(url: str) -> dict[str, dict[str, Any]]:
    """mode tag -> run, as the runs table lists them."""
    found = _post(url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [_experiment(url)["experiment_id"]]})
    return {next(t["value"] for t in r["data"]["tags"] if t["key"] == "mode"): r for r in found["runs"]}


def _files(url: str, run_id: str, path: str) -> list[str]:
    listing = _get(url, "/api/2.0/mlflow/artifacts/list", {"run_id": run_id, "path": path})
    return sorted(Path(f["path"]).name for f in listing.get("files", []))


@pytest.mark.slow
def test_the_experiment_is_marked_as_model_training(ui: str) -> None:
    tags = {t["key"]: t["value"] for t in _experiment(ui).get("tags", [])}
    assert tags[tracking.mlflow.EXPERIMENT_KIND_TAG] == "custom_model_development"


@pytest.mark.slow
def test_runs_are_named_by_experiment_mode_and_what_the_user_changed(ui: str) -> None:
    runs = _runs(ui)
    names = {mode: run["info"]["run_name"] for mode, run in runs.items()}
    assert names["train"].startswith(f"{EXPERIMENT}/train lr=0.002 epochs=1 ")
    assert names["eval"].startswith(f"{EXPERIMENT}/eval ")
    for name in names.values():  # no paths or store settings, then the start time
        assert "/tmp" not in name and "sqlite" not in name and time.strptime(name[-11:], "%m-%d %H:%M")


@pytest.mark.slow
def test_the_epoch_image_slider_starts_on_the_untrained_prediction(ui: str) -> None:
    run_id = _runs(ui)["train"]["info"]["run_id"]
    steps = {key: sorted(int(name.split("+")[2]) for name in _files(ui, run_id, "images")
                         if name.startswith(f"{key}+step+") and name.endswith(".png"))
             for key in ("epoch_change_infer", "epoch_change_tiled")}
    assert steps == {"epoch_change_infer": [0, 1], "epoch_change_tiled": [0, 1]}
    for key in steps:  # the readable copies the README promises
        assert _files(ui, run_id, key) == ["epoch_000.png", "epoch_001.png"]


def test_an_existing_experiment_without_the_kind_gets_it(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    old = client.create_experiment("old", artifact_location=(tmp_path / "art").as_uri())
    assert tracking.mlflow.EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert tracking.setup(uri, "old") == old
    assert client.get_experiment(old).tags[tracking.mlflow.EXPERIMENT_KIND_TAG] == "custom_model_development"
    client.set_experiment_tag(old, tracking.mlflow.EXPERIMENT_KIND_TAG, "genai_development")  # the user's choice
    tracking.setup(uri, "old")
    assert client.get_experiment(old).tags[tracking.mlflow.EXPERIMENT_KIND_TAG] == "genai_development"
