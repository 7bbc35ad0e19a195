"""A run that loses its tracking store goes on: its MLflow writes then go to the spool in its run dir.

A run opened with a spool folder (`start_run(..., spool_dir=)`) is registered here. The first of its
writes that fails for want of a connection (`server.is_connection_error`) switches it to spooling:
that write and every later one, the run's end included, are appended to its `spool.Journal`, with no
further network call. `flexseg mode=sync` (or the next start) uploads them (`flexseg.tracking.upload`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import mlflow

from flexseg.tracking import server
from flexseg.tracking.spool import Journal

log = logging.getLogger(__name__)

_spool_dirs: dict[str, tuple[Path, str]] = {}  # run id -> (spool folder, tracking URI): runs that may spool
_spooling: dict[str, Journal] = {}  # run id -> its journal, once its store is lost


def now_ms() -> int:
    return int(time.time() * 1000)


def register(run_id: str, spool_dir: Path, uri: str) -> None:
    """Let the run `run_id` (of the store at `uri`) spool into `spool_dir` when its store is lost."""
    _spool_dirs[run_id] = (Path(spool_dir).resolve(), uri)


def is_spooling(run_id: str) -> bool:
    return run_id in _spooling


def sync_command(folder: Path, cwd: Path | None = None) -> str:
    """The command that uploads the spool `folder`, run from `cwd` (default: the current directory)."""
    cwd = (cwd or Path.cwd()).resolve()
    if any(folder.is_relative_to(cwd / base) for base in ("outputs", "multirun")):
        return "flexseg mode=sync"
    return f"flexseg mode=sync sync.path={folder.parent}"


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _switch(run_id: str, err: BaseException) -> Journal:
    folder, uri = _spool_dirs[run_id]
    _spooling[run_id] = journal = Journal(folder)
    log.warning("tracking store %s lost (%s); run %s goes on and keeps its MLflow records in %s until "
                "`%s` uploads them", uri, _short(err), run_id, folder, sync_command(folder))
    return journal


def write(run_id: str, send: Callable[[], Any], record: Callable[[Journal], dict[str, Any]]) -> None:
    """Send one write of the run to the store, or to its spool once the store is lost.

    Args:
        run_id: The run written to.
        send: Makes the MLflow call.
        record: The journal record of the same write (`op` and its fields); given the journal to keep
            files in. Called only when spooling.

    Raises:
        Exception: what `send` raised, unless the run may spool and the error is a lost connection.
    """
    journal = _spooling.get(run_id)
    if journal is None:
        try:
            send()
            return
        except Exception as err:
            if run_id not in _spool_dirs or not server.is_connection_error(err):
                raise
            journal = _switch(run_id, err)
    journal.append({**record(journal), "run_id": run_id, "uri": _spool_dirs[run_id][1]})


def _drop_active_run() -> None:
    """End the active run in this process only: what `mlflow.end_run` does, without telling the store."""
    from mlflow.tracking import fluent

    try:
        stack = fluent._active_run_stack.get()  # MLflow 3.x: end_run pops this, then calls the store
    except AttributeError:  # another MLflow: its end_run leaves the run as well, after its (bounded) retries
        with contextlib.suppress(Exception):
            mlflow.end_run()
        return
    if stack:
        fluent._last_active_run_id.set(stack.pop().info.run_id)
    fluent.MLFLOW_RUN_ID.unset()


def end_run(run_id: str, status: str) -> None:
    """End the active run `run_id` with `status`; spooled (with its end time) once its store is lost.

    A spooled run ends with one warning: how many records wait in which folder, and the command that
    uploads them.
    """
    end_time = now_ms()
    if run_id in _spooling:
        _drop_active_run()
    else:
        try:
            mlflow.end_run(status)  # leaves the run in this process first, so also when the store is lost
            return
        except Exception as err:
            if run_id not in _spool_dirs or not server.is_connection_error(err):
                raise
            _switch(run_id, err)
    journal = _spooling[run_id]
    journal.append({"op": "end", "status": status, "end_time": end_time, "run_id": run_id,
                    "uri": _spool_dirs[run_id][1]})
    log.warning("tracking store %s unreachable: %d MLflow records of run %s are kept in %s; upload them with: %s",
                _spool_dirs[run_id][1], len(journal.pending()), run_id, journal.folder,
                sync_command(journal.folder))
