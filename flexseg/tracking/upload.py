"""Upload spooled MLflow records: `flexseg mode=sync`, and the pending spools of the run dirs at each start.

Records go up in the order written, with their original steps, timestamps and end times, each to the
run and store it names. After each record (or batch of metric records) the spool notes how many are
done (`Journal.mark_uploaded`), so a second upload sends nothing and an interrupted one resumes where it
stopped; should the note lag behind, metrics (same key, step, timestamp, value), params, tags, files and
the end are stored once all the same (a picture would be stored twice).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES

from flexseg.errors import FlexsegError
from flexseg.tracking import server
from flexseg.tracking.mlflow import resolve_uri
from flexseg.tracking.spool import Journal, find_local_spools

log = logging.getLogger(__name__)
MAX_METRICS = 1000  # per log_batch call (MLflow's limit)
MAX_PARAMS = 100
NOUNS = {"metrics": "metric values", "params": "params", "tags": "tags", "text": "text files", "image": "pictures",
         "artifact": "files"}


@dataclasses.dataclass
class SpoolUpload:
    """What one upload of a spool did.

    Attributes:
        folder: The spool folder.
        counts: Records uploaded per kind (`metrics` counts values).
        runs: The run ids written to.
        statuses: The end status of each run that ended.
        left: Records still pending; `reason` says why (the store does not answer, another upload runs).
    """

    folder: Path
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    runs: set[str] = dataclasses.field(default_factory=set)
    statuses: dict[str, str] = dataclasses.field(default_factory=dict)
    left: int = 0
    reason: str = ""

    def describe(self) -> str:
        """One line: what went up, and what is left."""
        what = ", ".join(f"{self.counts[op]} {noun}" for op, noun in NOUNS.items() if self.counts[op]) or "nothing"
        runs = f" to run {', '.join(sorted(self.runs))}" if self.runs else ""
        ended = "".join(f"; run {r} {s}" for r, s in sorted(self.statuses.items()))
        rest = f"; {self.left} records left ({self.reason})" if self.left else ""
        return f"{self.folder}: uploaded {what}{runs}{ended}{rest}"


def _image_stored(client: MlflowClient, record: dict[str, Any], listed: dict[str, list[str]]) -> bool:
    """Whether the picture of an image record is in the run already (its upload failed at the tag after it).

    MLflow names the files `images/<key>+step+<step>+timestamp+<ms>+<uuid>[+compressed].{png,webp}`, the
    compressed one last; the record keeps the timestamp the failed call used.
    """
    run_id = record["run_id"]
    if run_id not in listed:
        listed[run_id] = [a.path for a in client.list_artifacts(run_id, "images")]
    prefix = f"images/{record['key'].replace('/', '~')}+step+{record['step']}+timestamp+{record['timestamp']}+"
    return any(p.startswith(prefix) and p.endswith("+compressed.webp") for p in listed[run_id])


def _replay(client: MlflowClient, journal: Journal, record: dict[str, Any], listed: dict[str, list[str]]) -> int:
    """Send one record (not metrics); returns how many values it carried.

    Args:
        client: The client of the record's store.
        journal: The spool (for the files records name).
        record: The record.
        listed: Run id -> its `images/` artifacts, listed once per upload (`_image_stored`).
    """
    op, run_id = record["op"], record["run_id"]
    if op == "params":
        items = [Param(k, str(v)) for k, v in record["params"].items()]
        for i in range(0, len(items), MAX_PARAMS):
            client.log_batch(run_id, params=items[i : i + MAX_PARAMS])
        return len(items)
    if op == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in record["tags"].items()])
        return len(record["tags"])
    if op == "text":
        client.log_text(run_id, record["text"], record["artifact_file"])
    elif op == "artifact":
        client.log_artifact(run_id, str(journal.file(record["file"])), record.get("artifact_path"))
    elif op == "image" and _image_stored(client, record, listed):
        client.set_tag(run_id, MLFLOW_LOGGED_IMAGES, True)
    elif op == "image":
        from PIL import Image

        with Image.open(journal.file(record["file"])) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        client.log_image(run_id, pixels, key=record["key"], step=int(record["step"]),
                         timestamp=int(record["timestamp"]), synchronous=True)
    elif op == "end":
        client.set_terminated(run_id, record["status"], int(record["end_time"]))
    else:
        raise ValueError(f"unknown record kind '{op}'")
    return 1


def _metric_batch(records: list[dict[str, Any]], start: int) -> tuple[list[Metric], int]:
    """The metric values of the consecutive metrics records from `start` (same run and store); the end index."""
    first, metrics, end = records[start], [], start
    while (end < len(records) and records[end]["op"] == "metrics" and records[end]["run_id"] == first["run_id"]
           and records[end]["uri"] == first["uri"]
           and (not metrics or len(metrics) + len(records[end]["metrics"]) <= MAX_METRICS)):
        metrics.extend(Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in records[end]["metrics"])
        end += 1
    return metrics, end


def _answer(uri: str) -> str | None:
    """None when the store at `uri` can take records (a local store, a server that answers), else why not."""
    if not server.is_server(uri):
        return None
    server.limit_http_retries()
    return server.probe(uri)


def upload_spool(folder: Path, answers: dict[str, str | None]) -> SpoolUpload:
    """Upload the pending records of one spool, in order; stop at a store that does not answer.

    Args:
        folder: The spool folder.
        answers: Tracking URI -> None when its server answers, else why not; probed and filled in here
            for servers not in it yet (shared between spools, so each server is probed once).

    Raises:
        FlexsegError: when the store rejects a record (e.g. its run was deleted).
    """
    journal, report = Journal(folder), SpoolUpload(folder)
    with journal.upload_lock() as held:
        records = journal.records()
        done = journal.uploaded()
        if not held:
            report.left, report.reason = len(records) - done, "another process is uploading it"
            return report
        clients: dict[str, MlflowClient] = {}
        listed: dict[str, list[str]] = {}
        while done < len(records):
            record = records[done]
            uri, op = record["uri"], record["op"]
            if uri not in answers:
                answers[uri] = _answer(uri)
            if answers[uri] is not None:
                report.left, report.reason = len(records) - done, f"{uri} does not answer: {answers[uri]}"
                break
            if uri not in clients:
                clients[uri] = MlflowClient(tracking_uri=uri)
            client = clients[uri]
            try:
                if op == "metrics":
                    metrics, end = _metric_batch(records, done)
                    client.log_batch(record["run_id"], metrics=metrics)
                    count = len(metrics)
                else:
                    end, count = done + 1, _replay(client, journal, record, listed)
            except Exception as err:
                if not server.is_connection_error(err):
                    raise FlexsegError(
                        f"{journal.path}, record {done + 1} ({op} of run {record['run_id']}): {uri} refused it "
                        f"({' '.join(str(err).split())[:300]}). Records before it are uploaded; fix the cause, "
                        "or move the spool folder away to give up the rest.") from err
                answers[uri] = str(err).split("\n")[0][:200]
                report.left, report.reason = len(records) - done, f"{uri} stopped answering"
                break
            report.counts[op] += count
            report.runs.add(record["run_id"])
            if op == "end":
                report.statuses[record["run_id"]] = record["status"]
            done = end
            journal.mark_uploaded(done)
    return report


def upload_pending(uri: str, cwd: Path | None = None) -> list[SpoolUpload]:
    """At a start: upload the pending spools under `cwd`/outputs and `cwd`/multirun that belong to `uri`.

    Best effort: a failure is a warning (`flexseg mode=sync` retries), never a stop. One log line when
    anything went up.
    """
    cwd, uri = cwd or Path.cwd(), resolve_uri(uri)
    try:
        folders = [f for f in find_local_spools(cwd) if Journal(f).pending()[0]["uri"] == uri]
        reports = [upload_spool(f, {uri: None}) for f in folders]
    except Exception as err:  # noqa: BLE001 - the mode the user asked for still runs
        log.warning("could not upload the spooled MLflow records under %s (%s); `flexseg mode=sync` retries",
                    cwd, " ".join(str(err).split())[:300])
        return []
    sent = sum(sum(r.counts.values()) for r in reports)
    if sent:
        log.info("uploaded %d spooled MLflow values of %d run(s) to %s (from %s)", sent,
                 len({run for r in reports for run in r.runs}), uri, ", ".join(str(r.folder) for r in reports))
    return reports
