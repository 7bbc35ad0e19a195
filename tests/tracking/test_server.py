"""flexseg against a real tracking server (`mlflow server`, what `make server` starts).

Artifacts go through the server (proxied, stored under its `--artifacts-destination`), an eval from
another folder downloads the model from it, a server down at the start stops the command in seconds
with one line, and a server lost mid-training loses nothing: the run finishes, spools, and
`flexseg mode=sync` uploads it once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import REPO, TINY, run_cli
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer as Server
from mlflow_server import free_ports

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def started_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The module's server, started first so that its imports overlap the test that needs none."""
    srv = Server(tmp_path_factory.mktemp("server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.kill(signal.SIGTERM)


@pytest.fixture
def server(started_server: Server) -> Server:
    """The module's server, answering."""
    started_server.wait()
    return started_server


def _args(tmp: Path, url: str, experiment: str) -> list[str]:
    return [*TINY, f"tracking.uri={url}", f"dataset.root={tmp}/synthetic", f"tracking.experiment={experiment}"]


def test_a_server_down_at_start_stops_in_seconds_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_ports()[0]}"  # nothing listens there
    start = time.monotonic()
    proc = run_cli([*_args(tmp_path, url, "down"), "train.epochs=1"], tmp_path, check=False)
    elapsed = time.monotonic() - start
    errors = [line for line in proc.stderr.splitlines() if line.startswith("flexseg: error:")]
    # Loose bound (2 busy cores start Python + TF slowly): MLflow's own retries would take minutes.
    assert proc.returncode == 2 and elapsed < 60, (elapsed, proc.stderr[-2000:])
    assert len(errors) == 1 and f"tracking.uri={url}" in errors[0] and "make server" in errors[0]
    assert "Traceback" not in proc.stderr and "Epoch 1/" not in proc.stdout
    assert not list(tmp_path.glob("outputs/*/*/checkpoints"))


def test_artifacts_go_through_the_server_and_an_eval_elsewhere_downloads_the_model(
    server: Server, tmp_path: Path
) -> None:
    args = [*_args(tmp_path, server.url, "served"), "callbacks=minimal"]
    (tmp_path / "train").mkdir()
    run_cli([*args, "train.epochs=1"], tmp_path / "train")
    client = MlflowClient(server.url)
    (run,) = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = {p.relative_to(server.folder / "mlartifacts").as_posix()
              for p in (server.folder / "mlartifacts").rglob("*") if p.is_file()}
    assert any(p.endswith(f"{run.info.run_id}/artifacts/checkpoints/best.keras") for p in stored), stored
    assert not (tmp_path / "train" / "mlartifacts").exists()

    for path in sorted((tmp_path / "train" / "outputs").rglob("*"), reverse=True):  # the model is only on the server now
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "elsewhere").mkdir()
    proc = run_cli([*args, "mode=eval", f"ckpt=runs:/{run.info.run_id}"], tmp_path / "elsewhere")
    assert f"(MLflow run {run.info.run_id})" in proc.stdout
    evaluation = client.search_runs([run.info.experiment_id], filter_string="tags.mode = 'eval'")
    assert len(evaluation) == 1 and evaluation[0].info.status == "FINISHED"
    assert "test_mean_foreground_dice" in client.get_run(run.info.run_id).data.metrics


def _state(work: Path) -> dict:
    for path in work.glob("outputs/*/*/checkpoints/state.json"):
        try:
            return json.loads(path.read_text())
        except ValueError:  # replaced while read
            pass
    return {}


def test_a_server_lost_mid_run_loses_nothing_after_sync(server: Server, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    args = [*_args(tmp_path, server.url, "lost"), "train.epochs=4", "callbacks.epoch_change_tiled=false",
            "callbacks.plots=false"]
    proc = subprocess.Popen([sys.executable, "-m", "flexseg", *args], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 300
        while _state(work).get("epoch", 0) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _state(work).get("epoch") == 1, "the server should die during the training"
        server.kill()
        lost = time.monotonic()
        output, _ = proc.communicate(timeout=300)
        after_loss = time.monotonic() - lost
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-4000:]
    assert after_loss < 60, after_loss  # 3 epochs of a few seconds; MLflow's own retries took minutes per call
    assert "Epoch 4/4" in output and _state(work)["epoch"] == 4
    assert "Traceback" not in output
    ends = [line for line in output.splitlines() if "upload them with: flexseg mode=sync" in line]
    assert len(ends) == 1 and ends[0].endswith("flexseg mode=sync"), output[-4000:]

    server.start()
    server.wait()
    synced = run_cli(["mode=sync"], work)  # verbatim, as the warning says
    client = MlflowClient(server.url)
    (run,) = client.search_runs([client.get_experiment_by_name("lost").experiment_id])
    assert f"run {run.info.run_id} FINISHED" in synced.stdout
    assert run.info.status == "FINISHED" and run.info.end_time
    for key in ("loss", "val_dice"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [1, 2, 3, 4]
    assert {"checkpoints/best.keras", "checkpoints/last.keras"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    pictures = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith("+compressed.webp")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in pictures) == [0, 1, 2, 3, 4]  # each once

    again = run_cli(["mode=sync"], work)
    assert "nothing to upload" in again.stdout
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [1, 2, 3, 4]
