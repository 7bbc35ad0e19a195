"""Shared fixtures: compose the real config (then shrink it), tiny synthetic data, temp MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
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
    "dataset.synthetic.image_size=32", "dataset.synthetic.num_train=8", "dataset.synthetic.num_valid=4",
    "dataset.synthetic.num_test=4", "dataset.synthetic.num_large=1", "dataset.synthetic.large_size=96",
    "tiling.tile_size=32", "tiling.overlap=8",
]


def compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    """The validated `Config` object the CLI would build from these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from flexseg.config.store import register_configs
    from flexseg.config.validation import validate_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        dcfg = hydra_compose("config", overrides=overrides)
    return validate_config(OmegaConf.to_object(dcfg))


def run_cli(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m flexseg ARGS` in `cwd`; on failure with check=True, fail showing its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "flexseg", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)},
    )
    if check and proc.returncode != 0:
        pytest.fail(f"flexseg {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
