"""Write a `.keras` file from a model snapshot in a separate process (no Keras, no TensorFlow here).

Writing the weights file with h5py holds Python's GIL for the whole write; done on a thread of
the training process it stalls the training loop between steps (measured: 94 MB took 0.6 s
alone, but added 7-10 s to a 20 s epoch on 2 cores). `CheckpointProcess` therefore hands each
snapshot to a child process (`python -m flexseg.training.keras_file`) over a pipe; the child
writes the zip that `model.save` writes (`metadata.json`, `config.json`, `model.weights.h5` in
Keras' `H5IOStore` layout) to a temp file and renames it into place.

A snapshot's `entries` are (store path, metadata or None, [(key, array), ...]) as Keras' saving
walk produces them (`flexseg.training.callbacks.writer.ModelSnapshot`).
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

Entries = Sequence[tuple[str, Optional[dict], Sequence[tuple[str, Any]]]]


def weights_h5_bytes(entries: Entries) -> bytes:
    """The `model.weights.h5` of a snapshot, laid out as Keras' `H5IOStore` writes it."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for path, metadata, items in entries:
            if not items and not metadata:  # Keras creates a group only for a store that gets values
                continue
            group = h5.create_group("vars") if not path else h5.create_group(path).create_group("vars")
            for key, value in (metadata or {}).items():
                group.attrs[key] = value
            for key, value in items:
                if str(getattr(value, "dtype", "")) == "bfloat16":
                    group.create_dataset(key, data=value).attrs["dtype"] = "bfloat16"
                else:
                    group[key] = value
    return buffer.getvalue()


def write_keras_file(path: Path, config_json: str, metadata_json: str, entries: Entries) -> Path:
    """Write the `.keras` zip at `path`: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as archive:
                archive.writestr("metadata.json", metadata_json)
                archive.writestr("config.json", config_json)
                archive.writestr("model.weights.h5", weights_h5_bytes(entries))
            # On disk before the rename (in the writer process, off the training loop), so a crash
            # or power loss after it cannot leave an empty `last.keras` behind `state.json`.
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk: give its space back; the file at `path` stays as it was
        tmp.unlink(missing_ok=True)
        raise
    return path


class CheckpointProcess:
    """A child process that writes snapshots; one job at a time, started on first use.

    `write` blocks its caller (the writer thread) until the file is in place; an error in the
    child comes back as `OSError` with the child's message.
    """

    def __init__(self) -> None:
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                                 os.environ.get("PYTHONPATH", "")])}
            self._proc = subprocess.Popen([sys.executable, "-m", "flexseg.training.keras_file"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=env)
        return self._proc

    def write(self, path: Path, config_json: str, metadata_json: str, entries: Entries) -> Path:
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                pickle.dump((str(path), config_json, metadata_json, entries), proc.stdin, protocol=5)
                proc.stdin.flush()
                reply = proc.stdout.readline().decode().strip()
            except (BrokenPipeError, OSError) as err:
                raise OSError(f"the checkpoint writer process stopped ({err})") from err
            if reply != "ok":
                raise OSError(reply.removeprefix("error: ") or "the checkpoint writer process stopped")
            return path

    def close(self) -> None:
        """Let the child finish and exit (it exits by itself when this process dies)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=60)
            self._proc = None


def serve() -> None:
    """The child: read pickled jobs from stdin until it closes, write each, answer `ok` or `error: ...`.

    Ctrl-C in a terminal (and SLURM's SIGTERM) reaches the whole process group: the child ignores
    both, so the parent's graceful stop can still commit its checkpoint here; it exits when the
    parent closes the pipe or dies.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            path, config_json, metadata_json, entries = pickle.load(stdin)
        except EOFError:
            return
        try:
            write_keras_file(Path(path), config_json, metadata_json, entries)
            stdout.write(b"ok\n")
        except Exception as err:  # noqa: BLE001 - reported to the parent, which stops the training
            stdout.write(f"error: {err}\n".replace("\n", " ").strip().encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
