"""`flexseg mode=info`: versions, devices, the auto choices and the tracking store, in seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flexseg.cli import check_tensorflow
from flexseg.errors import FlexsegError
from tests.conftest import run_cli


def test_info_reports_devices_auto_choices_and_whether_the_store_answers(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run_cli(["mode=info", f"hydra.run.dir={tmp_path / 'info'}"], cwd=tmp_path)
    elapsed = time.monotonic() - start
    out = proc.stdout
    for line in ("== versions ==", "tensorflow", "keras 3.", "mlflow 3.", "CPU: ", "cores usable",
                 "avx512f ", "amx_bf16 ", "train.precision=auto -> ", "train.strategy=auto -> ",
                 f"tracking.uri=sqlite:///mlflow.db: {tmp_path / 'mlflow.db'}"):
        assert line in out, f"{line!r} missing from:\n{out}"
    assert (tmp_path / "info" / "info.txt").read_text().strip() == out.strip()
    print(f"mode=info took {elapsed:.1f} s")  # the goal is < 10 s on 2 cores; not asserted (timing)


def test_info_says_when_an_http_tracking_server_does_not_answer() -> None:
    from flexseg.modes.info import probe_tracking

    start = time.monotonic()
    answer = probe_tracking("http://127.0.0.1:9")  # nothing listens on the discard port
    assert answer.startswith("does NOT answer") and "make server" in answer and time.monotonic() - start < 5


def test_a_missing_tensorflow_stops_with_the_install_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    with pytest.raises(FlexsegError, match=r"pip install -e '\.\[cpu\]'.*pip install -e '\.\[cuda\]'"):
        check_tensorflow()
