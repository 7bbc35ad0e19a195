"""`train.strategy`: the cluster a worker finds in TF_CONFIG or SLURM, auto's choice, chief and worker duties."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
from conftest import REPO, compose

from flexseg.config.choices import Resume, Strategy
from flexseg.errors import FlexsegError
from flexseg.training import distribute
from flexseg.training.distribute import Cluster, Distribution

CLUSTER_VARS = ("TF_CONFIG", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                "SLURM_STEP_TASKS_PER_NODE", "SLURM_JOB_ID", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No cluster around (whatever the machine running the tests has); restored afterwards."""
    for name in CLUSTER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _slurm_step(env: pytest.MonkeyPatch, rank: int, **extra: str) -> None:
    """Rank `rank` of a 4-task srun step on node01 and node02, 2 tasks each, job 1234."""
    for name, value in {"SLURM_JOB_ID": "1234", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4",
                        "SLURM_PROCID": str(rank), "SLURM_STEP_NODELIST": "node[01-02]",
                        "SLURM_STEP_TASKS_PER_NODE": "2(x2)", **extra}.items():
        env.setenv(name, value)


def test_tf_config_gives_the_workers_in_order_and_the_chief() -> None:
    two = distribute.parse_tf_config(
        '{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}')
    assert (two.workers, two.index, two.is_chief) == (["10.0.0.1:2222", "10.0.0.2:2222"], 1, False)
    with_chief = distribute.parse_tf_config(json.dumps(
        {"cluster": {"worker": ["w0:1", "w1:1"], "chief": ["c:1"]}, "task": {"type": "worker", "index": 0}}))
    assert (with_chief.workers, with_chief.index, with_chief.is_chief) == (["c:1", "w0:1", "w1:1"], 1, False)
    assert distribute.parse_tf_config(json.dumps(
        {"cluster": {"worker": ["w0:1"], "chief": ["c:1"]}, "task": {"type": "chief", "index": 0}})).is_chief
    assert two.source == "TF_CONFIG"


@pytest.mark.parametrize(("text", "match"), [
    ("{not json", "TF_CONFIG is not a cluster description"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not a cluster description"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "is not a chief or worker"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "ps", "index": 0}}', "ps do not train"),
])
def test_a_bad_tf_config_says_what_to_set(text: str, match: str) -> None:
    with pytest.raises(FlexsegError, match=match) as err:
        distribute.parse_tf_config(text)
    assert "train.strategy" in str(err.value) and '"task": {"type": "worker"' in str(err.value)


def test_slurm_tasks_become_workers_with_a_gpu_each(env: pytest.MonkeyPatch) -> None:
    _slurm_step(env, rank=3, CUDA_VISIBLE_DEVICES="0,1")
    cluster = distribute.slurm_cluster()
    port = distribute.SLURM_PORT_BASE + 234 * 16  # job 1234: the same ports for every task of the job
    assert cluster.workers == [f"node01:{port}", f"node01:{port + 1}", f"node02:{port}", f"node02:{port + 1}"]
    assert (cluster.task, cluster.index, cluster.is_chief, cluster.gpus_per_task) == (("worker", 3), 3, False, 1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"  # the second task on node02 takes its second GPU
    _slurm_step(env, rank=0, CUDA_VISIBLE_DEVICES="0,1")
    assert distribute.slurm_cluster().is_chief and os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_slurm_tasks_without_gpus_train_on_their_cpus(env: pytest.MonkeyPatch) -> None:
    _slurm_step(env, rank=1)
    cluster = distribute.slurm_cluster()
    assert (len(cluster.workers), cluster.index, cluster.gpus_per_task) == (4, 1, 0)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_slurm_outside_an_srun_step_or_short_of_gpus_says_what_to_do(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLURM_NTASKS", "4")  # an sbatch script that runs python itself: no step of 4 tasks
    env.setenv("SLURM_PROCID", "0")
    with pytest.raises(FlexsegError, match="not one task of an srun step.*SLURM_STEP_TASKS_PER_NODE is not set"):
        distribute.find_cluster()
    _slurm_step(env, rank=0, CUDA_VISIBLE_DEVICES="0")
    with pytest.raises(FlexsegError, match="runs 2 tasks on a node with 1 GPU.*tasks_per_node"):
        distribute.slurm_cluster()


def test_multi_worker_without_a_cluster_says_how_to_give_one(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(FlexsegError, match="train.strategy=multi_worker needs its cluster: set TF_CONFIG"):
        distribute.find_cluster()


def test_auto_picks_the_cluster_first_and_none_on_one_device(env: pytest.MonkeyPatch) -> None:
    assert distribute.resolve_kind(Strategy.auto)[0] == Strategy.none  # this CPU machine: one device
    assert distribute.resolve_kind(Strategy.mirrored)[0] == Strategy.mirrored
    _slurm_step(env, rank=2)
    assert distribute.resolve_kind(Strategy.auto)[0] == Strategy.multi_worker
    env.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task of a bigger allocation: no cluster of its own
    assert distribute.resolve_kind(Strategy.auto)[0] == Strategy.none
    env.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}')
    assert distribute.resolve_kind(Strategy.auto)[0] == Strategy.multi_worker


def test_none_is_tensorflows_default_strategy(env: pytest.MonkeyPatch) -> None:
    dist = distribute.build_distribution(Strategy.auto)
    assert (dist.kind, dist.num_replicas, dist.is_chief, dist.shard()) == (Strategy.none, 1, True, None)
    assert (dist.global_batch(4), dist.describe()) == (4, "none, 1 replica")


def test_a_worker_of_two_shards_the_data_and_leaves_writing_to_the_chief() -> None:
    cluster = Cluster("TF_CONFIG", {"worker": ["a:1", "b:1"]}, ("worker", 1))
    dist = Distribution(SimpleNamespace(num_replicas_in_sync=4), Strategy.multi_worker, cluster)
    assert (dist.is_chief, dist.num_workers, dist.shard(), dist.global_batch(3)) == (False, 2, (2, 1), 12)
    assert dist.describe() == "multi_worker, 2 workers (TF_CONFIG), 4 replicas"
    cfg = compose(["callbacks.early_stopping=true", "callbacks.reduce_lr=true"])
    c = distribute.worker_config(cfg).callbacks
    assert not any((c.checkpoint, c.last_checkpoint, c.csv_logs, c.plots, c.mlflow, c.epoch_change_infer,
                    c.epoch_change_tiled))
    assert c.early_stopping and c.reduce_lr and c.monitor == cfg.callbacks.monitor  # they steer training alike
    assert cfg.callbacks.checkpoint  # the chief's config is untouched
    with pytest.raises(FlexsegError, match="train.resume=auto does not work with 2 workers"):
        distribute.check_resume(dist, "auto")
    distribute.check_resume(dist, Resume.false)


def test_the_slurm_ddp_preset_runs_one_task_per_gpu() -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from flexseg.config.store import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["hydra/launcher=slurm_ddp", "hydra.launcher.gpus_per_node=2",
                                                 "hydra.launcher.nodes=3"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (3, 2, 2)
