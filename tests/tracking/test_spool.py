"""The spool of a run whose tracking store is lost: the journal, the switch to it, and its upload."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from conftest import seed_store
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flexseg import tracking
from flexseg.errors import FlexsegError
from flexseg.tracking import offline, server
from flexseg.tracking.spool import Journal


def _store(tmp: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp}/mlflow.db"
    seed_store([f"tracking.uri={uri}"])
    exp_id = tracking.setup(uri, "spool")
    return uri, MlflowClient(uri), exp_id


def _lost_connection(*args: object, **kwargs: object) -> None:
    """What MLflow raises after its retries when the server is gone: an MlflowException over a requests error."""
    try:
        raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    except requests.exceptions.ConnectionError as err:
        raise MlflowException(f"API request failed with exception {err}")


def test_a_torn_last_line_is_never_read_nor_appended_to(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "spool")
    journal.append({"op": "tags", "tags": {"a": "1"}})
    journal.append({"op": "tags", "tags": {"b": "2"}})
    with open(journal.path, "ab") as f:
        f.write(b'{"op": "tags", "ta')  # the process was killed mid-write
    assert [r["tags"] for r in Journal(journal.folder).records()] == [{"a": "1"}, {"b": "2"}]
    Journal(journal.folder).append({"op": "tags", "tags": {"c": "3"}})  # a later writer (a resumed run)
    assert [r["tags"] for r in Journal(journal.folder).records()] == [{"a": "1"}, {"b": "2"}, {"c": "3"}]
    assert all(json.loads(line) for line in journal.path.read_text().splitlines())


def test_connection_errors_are_told_from_rejected_requests() -> None:
    with pytest.raises(MlflowException) as lost:
        _lost_connection()
    assert server.is_connection_error(lost.value)
    assert not server.is_connection_error(MlflowException("Run 'abc' not found"))
    assert not server.is_connection_error(OSError("disk full"))


def test_a_lost_store_switches_the_run_to_its_spool_and_sync_uploads_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uri, client, exp_id = _store(tmp_path)
    spool = tmp_path / "run" / tracking.SPOOL_DIR
    (tmp_path / "best.keras").write_bytes(b"model v1")
    picture = np.zeros((8, 8, 3), np.uint8)
    with tracking.start_run(exp_id, run_name="lost", spool_dir=spool) as run_id:
        tracking.log_params({"lr": "0.1"})
        tracking.log_metrics({"loss": 1.0}, step=1)
        monkeypatch.setattr(MlflowClient, "log_batch", _lost_connection)  # the server goes away
        tracking.log_metrics({"loss": 0.5, "val_dice": 0.25}, step=2)
        monkeypatch.setattr(MlflowClient, "log_batch", lambda *a, **k: pytest.fail("a network call after the switch"))
        monkeypatch.setattr(MlflowClient, "set_terminated", lambda *a, **k: pytest.fail("a network call at the end"))
        tracking.log_metrics({"loss": 0.25, "val_dice": 0.5}, step=3)
        tracking.log_image(picture, "epoch_change_infer", 3)
        tracking.log_artifact(tmp_path / "best.keras", "checkpoints")
        (tmp_path / "new.keras").write_bytes(b"model v2")  # a later save, by temp file + rename as flexseg saves
        os.replace(tmp_path / "new.keras", tmp_path / "best.keras")
        tracking.log_text("a: 1\n", "config.yaml")
        tracking.set_tags({"note": "spooled"})
    tracking.log_metrics_to(run_id, {"best_val_dice": 0.5})  # after the end, as train's summary does
    monkeypatch.undo()

    assert mlflow.active_run() is None
    assert client.get_run(run_id).info.status == "RUNNING"  # the store was never told
    assert [r["op"] for r in Journal(spool).records()] == [
        "metrics", "metrics", "image", "artifact", "text", "tags", "end", "metrics"]
    warning = [r.getMessage() for r in caplog.records if "upload them with" in r.getMessage()]
    assert len(warning) == 1 and "7 MLflow records" in warning[0] and warning[0].endswith(
        f"flexseg mode=sync sync.path={spool.parent}")

    first = tracking.upload_spool(spool, {})
    assert first.left == 0 and first.statuses == {run_id: "FINISHED"}
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["note"] == "spooled"
    end_record = next(r for r in Journal(spool).records() if r["op"] == "end")
    assert run.info.end_time == end_record["end_time"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert run.data.metrics["best_val_dice"] == 0.5
    saved = Path(client.download_artifacts(run_id, "checkpoints/best.keras", str(tmp_path / "down")))
    assert saved.read_bytes() == b"model v1"  # the file as it was when logged
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    assert len(images) == 2 and all("+step+3+" in p for p in images)  # full size + compressed

    second = tracking.upload_spool(spool, {})
    assert sum(second.counts.values()) == 0 and tracking.find_spools([tmp_path]) == []
    assert len(client.get_metric_history(run_id, "loss")) == 3


def test_a_picture_that_went_up_before_its_tag_failed_is_not_stored_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, client, exp_id = _store(tmp_path)
    spool = tmp_path / "run" / tracking.SPOOL_DIR
    with tracking.start_run(exp_id, run_name="picture", spool_dir=spool) as run_id:
        monkeypatch.setattr(MlflowClient, "set_tag", _lost_connection)  # the two files go up, the tag after them fails
        tracking.log_image(np.zeros((8, 8, 3), np.uint8), "epoch_change_infer", 1)
        monkeypatch.undo()
    assert [r["op"] for r in Journal(spool).records()] == ["image", "end"]
    assert len(client.list_artifacts(run_id, "images")) == 2

    tracking.upload_spool(spool, {})
    assert len(client.list_artifacts(run_id, "images")) == 2
    assert client.get_run(run_id).data.tags["mlflow.loggedImages"] == "True"


def test_an_interrupted_upload_resumes_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, client, exp_id = _store(tmp_path)
    run_id = client.create_run(exp_id).info.run_id
    journal = Journal(tmp_path / tracking.SPOOL_DIR)
    for step in (1, 2, 3):
        journal.append({"op": "metrics", "metrics": [["loss", 1.0 / step, 1000 + step, step]], "run_id": run_id,
                        "uri": uri})
        journal.append({"op": "tags", "tags": {f"epoch_{step}": "done"}, "run_id": run_id, "uri": uri})
    journal.append({"op": "end", "status": "FINISHED", "end_time": 5000, "run_id": run_id, "uri": uri})

    real_log_batch = MlflowClient.log_batch
    calls = []

    def dies_at_the_third_call(self: MlflowClient, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            _lost_connection()
        real_log_batch(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", dies_at_the_third_call)
    cut = tracking.upload_spool(journal.folder, {})
    assert cut.left == 5 and "stopped answering" in cut.reason and journal.uploaded() == 2
    monkeypatch.undo()

    rest = tracking.upload_spool(journal.folder, {})
    assert rest.left == 0 and rest.counts == {"metrics": 2, "tags": 2, "end": 1}
    assert [(m.step, m.timestamp) for m in client.get_metric_history(run_id, "loss")] == [(1, 1001), (2, 1002), (3, 1003)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time == 5000
    assert {"epoch_1", "epoch_2", "epoch_3"} <= set(run.data.tags)


def test_a_spool_being_uploaded_elsewhere_is_left_alone(tmp_path: Path) -> None:
    uri, client, exp_id = _store(tmp_path)
    run_id = client.create_run(exp_id).info.run_id
    journal = Journal(tmp_path / tracking.SPOOL_DIR)
    journal.append({"op": "tags", "tags": {"a": "1"}, "run_id": run_id, "uri": uri})
    with journal.upload_lock() as held:  # another sync (or a start) uploads it now
        assert held
        skipped = tracking.upload_spool(journal.folder, {})
    assert skipped.left == 1 and "another process" in skipped.reason and "a" not in client.get_run(run_id).data.tags
    assert tracking.upload_spool(journal.folder, {}).left == 0 and client.get_run(run_id).data.tags["a"] == "1"


def test_a_record_the_store_rejects_stops_the_upload_with_its_place(tmp_path: Path) -> None:
    uri, client, exp_id = _store(tmp_path)
    journal = Journal(tmp_path / tracking.SPOOL_DIR)
    journal.append({"op": "tags", "tags": {"a": "1"}, "run_id": "0" * 32, "uri": uri})  # no such run
    with pytest.raises(FlexsegError, match="record 1 \\(tags of run 0+\\)"):
        tracking.upload_spool(journal.folder, {})
    assert journal.uploaded() == 0


def test_a_start_uploads_the_pending_spools_of_its_own_store_only(tmp_path: Path) -> None:
    uri, client, exp_id = _store(tmp_path)
    run_id = client.create_run(exp_id).info.run_id
    ours = Journal(tmp_path / "outputs" / "demo" / "2026-01-01_00-00-00" / tracking.SPOOL_DIR)
    ours.append({"op": "metrics", "metrics": [["loss", 0.5, 1000, 1]], "run_id": run_id, "uri": uri})
    other = Journal(tmp_path / "multirun" / "demo" / "2026-01-01_00-00-00" / "0" / tracking.SPOOL_DIR)
    other.append({"op": "tags", "tags": {"a": "1"}, "run_id": run_id, "uri": "http://127.0.0.1:1"})

    reports = tracking.upload_pending(uri, cwd=tmp_path)
    assert [r.folder for r in reports] == [ours.folder] and ours.pending() == []
    assert len(other.pending()) == 1  # another store's: left for `flexseg mode=sync`
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1]


def test_a_server_that_does_not_answer_is_named_in_seconds(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1"  # nothing listens on port 1
    start = time.monotonic()
    with pytest.raises(FlexsegError, match=f"tracking.uri={url}: the MLflow server does not answer.*make server"):
        server.require_server(url)
    assert time.monotonic() - start < 5
    server.require_server(f"sqlite:///{tmp_path}/mlflow.db")  # a local store is not probed


def test_sync_command_names_the_run_dir_only_outside_outputs(tmp_path: Path) -> None:
    assert offline.sync_command(tmp_path / "outputs" / "demo" / "t" / tracking.SPOOL_DIR, tmp_path) == "flexseg mode=sync"
    assert offline.sync_command(tmp_path / "elsewhere" / tracking.SPOOL_DIR, tmp_path) == (
        f"flexseg mode=sync sync.path={tmp_path / 'elsewhere'}")
