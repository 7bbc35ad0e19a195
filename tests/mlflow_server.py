"""A real `mlflow server` for tests (what `make server` / `make ui` start), on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import seed_store

STARTUP_S = 90  # the server imports for 10-30 s on a busy 2-core machine


def free_ports(count: int = 1) -> list[int]:
    """`count` different ports free on 127.0.0.1 now (all held open while choosing, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class MlflowServer:
    """`mlflow server` on `folder/mlflow.db` (made from the empty store when absent) and `folder/mlartifacts`.

    `start` returns at once (the server imports for a while: overlap other work), `wait` until it answers.
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_ports()[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        seed_store([f"tracking.uri=sqlite:///{folder}/mlflow.db"])  # no schema migration at each start

    def start(self) -> None:
        with (self.folder / "server.log").open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
                 "--artifacts-destination", str(self.folder / "mlartifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )

    def wait(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).close()
                return
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not answer within {STARTUP_S} s:\n"
                                f"{(self.folder / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server's whole process group (uvicorn runs in a child); SIGKILL is a crash."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a worker left behind
