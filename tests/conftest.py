"""Shared fixtures: compose the real config (then shrink it), tiny synthetic data, temp MLflow store."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# A model and dataset small enough for a CPU test in seconds. `dataset=synthetic` chosen explicitly: only
# then may the synthetic dataset be generated into a folder of the test's (`dataset.root={tmp}/synthetic`).
TINY = [
    "dataset=synthetic",
    "model.image_height=32", "model.image_width=32", "model.base_filters=4", "model.base_kernels=3",
    "model.num_layers=3", "model.dropout_rate=0.0", "train.batch_size=4", "callbacks.num_infer_images=2",
    "train.optimizer=sgd",  # its training step traces in about half Adam's time (tracing dominates a tiny run)
    "dataset.synthetic.image_size=32", "dataset.synthetic.num_train=8", "dataset.synthetic.num_valid=4",
    "dataset.synthetic.num_test=4", "dataset.synthetic.num_large=1", "dataset.synthetic.large_size=96",
    "tiling.tile_size=32", "tiling.overlap=8",
    "train.precision=float32",  # auto picks bf16 on AMX CPUs: the same numbers on every CI machine
]


@functools.cache
def _empty_store() -> Path:
    """An MLflow SQLite store as MLflow creates it (schema + `Default` experiment), made once per process."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="flexseg-store-"))
    atexit.register(shutil.rmtree, folder, True)
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


def seed_store(overrides: list[str]) -> None:
    """Copy the empty store to a `tracking.uri=sqlite:////abs/file.db` that does not exist yet.

    A new store runs MLflow's schema migrations: 2-4 s of CPU per test, which a copy saves.
    """
    for override in overrides:
        key, _, uri = override.partition("=")
        if key.lstrip("+") != "tracking.uri" or not uri.startswith("sqlite:////") or "," in uri or "$" in uri:
            continue
        path = Path(uri[len("sqlite:///") :])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_empty_store(), path)


def compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    """The validated `Config` object the CLI would build from these overrides (a new SQLite store pre-made)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from flexseg.config.store import register_configs
    from flexseg.config.validation import validate_config

    seed_store(overrides)
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        dcfg = hydra_compose("config", overrides=overrides)
    return validate_config(OmegaConf.to_object(dcfg))


def run_cli(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m flexseg ARGS` in `cwd`; on failure with check=True, fail showing its output."""
    if not {"-m", "--multirun"} & set(args):  # a sweep's parallel jobs make their store themselves
        seed_store(args)
    proc = subprocess.run(
        [sys.executable, "-m", "flexseg", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)},
    )
    if check and proc.returncode != 0:
        pytest.fail(f"flexseg {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def kill_after_epoch(proc: subprocess.Popen, run_dir: Path, epoch: int, timeout_s: float, log: Path) -> int:
    """Wait until the training `proc` has committed `epoch` epochs in `run_dir`, then kill it with SIGKILL.

    Fails the test when the process exits first or no such epoch comes within `timeout_s` (showing `log`).

    Returns:
        The epoch count `checkpoints/state.json` holds after the kill (at least `epoch`).
    """
    import signal
    import time

    from flexseg.training.callbacks import read_state

    state_file, deadline = run_dir / "checkpoints" / "state.json", time.monotonic() + timeout_s
    while not (state_file.is_file() and read_state(state_file).epoch >= epoch):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no epoch {epoch} within {timeout_s} s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return read_state(state_file).epoch


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
