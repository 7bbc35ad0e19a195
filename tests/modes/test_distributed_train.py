"""Training under tf.distribute: mirrored over 2 logical CPUs, 2 workers on 127.0.0.1, one device: one loss curve.

Each training that needs its own TensorFlow runs in a subprocess: logical devices must be set before
TensorFlow starts, and a multi-worker strategy before its first op. `train.batch_size` is per replica,
so 4 per replica on 2 replicas is the global batch of 8 that the one-device reference trains with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, compose, kill_after_epoch, seed_store
from mlflow_server import free_ports
from omegaconf import OmegaConf

from flexseg.context import RunContext
from flexseg.modes import train
from flexseg.training.callbacks import read_state

pytestmark = pytest.mark.slow

# 8 training images at a global batch of 8: one step per epoch; a rate at which the loss moves
# A per-pixel loss: the default dice_ce_loss pools its dice over each replica's batch (as DDP nnU-Net does), so
# 2 replicas x 4 images differ from 8 images on one device in the 4th digit; cross-entropy matches exactly.
BASE = [*TINY, "train.epochs=3", "train.learning_rate=0.1", "callbacks=minimal", "tracking.experiment=dist",
        "train.loss=categorical_crossentropy"]
# Split the CPU into 2 logical devices before TensorFlow starts, then run the CLI with the arguments.
TWO_CPUS = (
    "import sys, tensorflow as tf; "
    "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0], "
    "[tf.config.LogicalDeviceConfiguration()] * 2); "
    "from flexseg.cli import main; sys.argv[0] = 'flexseg'; main()"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG" and not k.startswith("SLURM_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), **extra}


def _curve(run_dir: Path) -> list[tuple[float, float]]:
    """(loss, val_loss) of every committed epoch of a run dir."""
    return [(row["loss"], row["val_loss"]) for row in read_state(run_dir / "checkpoints" / "state.json").history]


def _runs(store: Path):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    return client, client.search_runs([client.get_experiment_by_name("dist").experiment_id])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[float, float]]:
    """The reference loss curve: one device (train.strategy=none), batch 8, trained in this process."""
    tmp = tmp_path_factory.mktemp("one_device")
    overrides = [*BASE, "train.strategy=none", "train.batch_size=8", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
                 f"dataset.root={tmp}/synthetic"]
    cfg = compose(overrides)
    train.run(cfg, RunContext(tmp / "run", overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))
    curve = _curve(tmp / "run")
    assert curve[0][0] - curve[-1][0] > 0.01  # the loss moves: a wrong gradient average would show
    return curve


def test_mirrored_on_two_logical_cpus_matches_one_device_and_resumes_after_kill_9(
    tmp_path: Path, one_device: list[tuple[float, float]]
) -> None:
    args = [*BASE, "train.strategy=mirrored", "train.batch_size=4", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"dataset.root={tmp_path}/synthetic"]
    seed_store(args)
    with (tmp_path / "killed.log").open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", TWO_CPUS, *args, f"hydra.run.dir={tmp_path}/train"],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=_env())
        killed_at = kill_after_epoch(proc, tmp_path / "train", 1, 300, tmp_path / "killed.log")
    state_file = tmp_path / "train" / "checkpoints" / "state.json"
    assert 1 <= killed_at < 3

    resumed = subprocess.run([sys.executable, "-c", TWO_CPUS, *args, "train.resume=auto",
                              f"hydra.run.dir={tmp_path}/resumed"], cwd=tmp_path, capture_output=True, text=True,
                             env=_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, runs = _runs(tmp_path / "mlflow.db")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "resume_1" in runs[0].data.tags
    assert runs[0].data.tags["strategy"] == "mirrored, 2 replicas"
    assert runs[0].data.params["train.global_batch_size"] == "8"
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "val_loss")) == [1, 2, 3]
    state = read_state(state_file)
    assert (state.epoch, state.finished) == (3, True)
    assert _curve(tmp_path / "train") == [pytest.approx(pair, rel=1e-4) for pair in one_device]


def test_two_workers_on_localhost_train_one_mlflow_run_like_one_device(
    tmp_path: Path, one_device: list[tuple[float, float]]
) -> None:
    args = [*BASE, "train.strategy=multi_worker", "train.batch_size=4", "callbacks.epoch_change_infer=true",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic"]
    seed_store(args)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        with (tmp_path / f"worker{index}.log").open("w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "flexseg", *args, f"hydra.run.dir={tmp_path}/worker{index}"], cwd=tmp_path,
                stdout=out, stderr=subprocess.STDOUT, env=_env(TF_CONFIG=tf_config)))
    try:
        codes = [proc.wait(timeout=600) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2))
    assert codes == [0, 0], logs

    client, runs = _runs(tmp_path / "mlflow.db")
    assert len(runs) == 1, logs  # the chief's; the other worker opens none
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["strategy"] == "multi_worker, 2 workers (TF_CONFIG), 2 replicas"
    assert run.data.tags["run_dir"] == str(tmp_path / "worker0")
    for key in ("loss", "val_loss", "val_dice"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [1, 2, 3], key
    assert sorted(p.name for p in (tmp_path / "worker0" / "epoch_change_infer").glob("*.png")) == [
        "epoch_000.png", "epoch_001.png", "epoch_002.png", "epoch_003.png"]  # pictured by the chief alone
    assert {p.name for p in (tmp_path / "worker1").iterdir()} <= {"cli.log", ".hydra"}  # the worker wrote nothing
    # each worker trained on its half of every global batch: the same steps as one device
    assert _curve(tmp_path / "worker0") == [pytest.approx(pair, rel=1e-4) for pair in one_device]
