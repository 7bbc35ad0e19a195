"""`train.strategy`: the tf.distribute strategy a training runs under, from the devices and the environment.

- none: TensorFlow's default strategy (one device).
- mirrored: `MirroredStrategy` over all local GPUs; on a machine without GPUs, over all logical CPU
  devices (one, unless the process split the CPU with `tf.config.set_logical_device_configuration`,
  as the tests do to get two replicas).
- multi_worker: `MultiWorkerMirroredStrategy`, one process per machine or GPU, whose peers come from
  `TF_CONFIG` or, in a SLURM step of several tasks, from TensorFlow's `SlurmClusterResolver`.
- auto: `flexseg.training.devices.auto_strategy` (what `flexseg mode=info` shows).

`train.batch_size` is per replica: one step takes `batch_size x num_replicas` images (the global
batch), split over the replicas, and averages their gradients. Of several workers only the chief
(task `chief`, else worker 0) writes files and MLflow; every worker runs the same steps.

A multi-worker strategy must exist before TensorFlow runs its first op: build it first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from typing import Mapping

import tensorflow as tf

from flexseg.config.choices import Resume, Strategy
from flexseg.config.schemas import Config
from flexseg.errors import FlexsegError
from flexseg.training.devices import auto_strategy, gpu_info

log = logging.getLogger(__name__)
# SLURM tasks listen on SLURM_PORT_BASE + (job id % 1000) * 16 + their rank on the node: jobs that share
# a node use other ports, below Linux's ephemeral range (32768+).
SLURM_PORT_BASE = 15000


@dataclass(frozen=True)
class Cluster:
    """The workers of a multi-worker training and this process's place among them.

    Attributes:
        source: Where it came from: "TF_CONFIG" or "SLURM".
        spec: The cluster as TF_CONFIG writes it: {"chief"?: ["host:port"], "worker": ["host:port", ...]}.
        task: This process's task: (type, index within the type).
        gpus_per_task: GPUs each task uses (SLURM; None: TensorFlow counts them).
    """

    source: str
    spec: dict[str, list[str]]
    task: tuple[str, int]
    gpus_per_task: int | None = None

    @property
    def workers(self) -> list[str]:
        """Every worker's address, the chief first (TensorFlow's order of tasks)."""
        return [*self.spec.get("chief", []), *self.spec.get("worker", [])]

    @property
    def index(self) -> int:
        """This process's position in `workers` (0: the chief, which writes files and MLflow)."""
        kind, i = self.task
        return i if kind == "chief" else len(self.spec.get("chief", [])) + i

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def parse_tf_config(text: str) -> Cluster:
    """`TF_CONFIG` JSON -> the cluster (only `chief` and `worker` tasks: all of them train).

    Raises:
        FlexsegError: Not JSON, no `cluster`/`task`, other task types, or a task not in the cluster.
    """
    how = ('set TF_CONFIG to e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
           '"task": {"type": "worker", "index": 0}} (one index per process), or train.strategy=none')
    try:
        data = json.loads(text)
        spec = {k: [str(a) for a in v] for k, v in data["cluster"].items()}
        task = (str(data["task"]["type"]), int(data["task"]["index"]))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FlexsegError(f"train.strategy=multi_worker: TF_CONFIG is not a cluster description ({err!r}); "
                           f"{how}.") from None
    other = sorted(set(spec) - {"chief", "worker"})
    if other or not (0 <= task[1] < len(spec.get(task[0], []))):
        raise FlexsegError(f"train.strategy=multi_worker: TF_CONFIG's task {task} is not a chief or worker of its "
                           f"cluster {spec}{' (task types ' + ', '.join(other) + ' do not train)' if other else ''}; "
                           f"{how}.")
    return Cluster("TF_CONFIG", spec, task)


def _visible_gpus(env: Mapping[str, str]) -> int:
    """GPUs SLURM gave this node's tasks: CUDA_VISIBLE_DEVICES, else SLURM_GPUS_ON_NODE, else none."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return int(env["SLURM_GPUS_ON_NODE"]) if env.get("SLURM_GPUS_ON_NODE", "").isdigit() else 0


def slurm_cluster() -> Cluster:
    """The cluster of this SLURM step's tasks, through TensorFlow's `SlurmClusterResolver`.

    The resolver reads SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST and
    SLURM_STEP_TASKS_PER_NODE. With GPUs it gives each task its share of its
    node's GPUs by setting CUDA_VISIBLE_DEVICES, so call this before TensorFlow lists its GPUs.

    Raises:
        FlexsegError: Not inside an `srun` step, or fewer GPUs on a node than tasks.
    """
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import expand_tasks_per_node

    env = os.environ
    job = int(env["SLURM_JOB_ID"]) if env.get("SLURM_JOB_ID", "").isdigit() else 0
    try:
        tasks_per_node = max(expand_tasks_per_node(env["SLURM_STEP_TASKS_PER_NODE"]))
        gpus = _visible_gpus(env)
        if 0 < gpus < tasks_per_node:
            raise FlexsegError(
                f"train.strategy: the SLURM step runs {tasks_per_node} tasks on a node with {gpus} GPU(s); run one "
                "task per GPU (hydra.launcher.tasks_per_node equal to hydra.launcher.gpus_per_node).")
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=SLURM_PORT_BASE + (job % 1000) * 16,
            gpus_per_node=gpus or tasks_per_node, gpus_per_task=None if gpus else 1, auto_set_gpu=bool(gpus))
        spec = resolver.cluster_spec().as_dict()
    except (KeyError, RuntimeError, ValueError) as err:
        why = f"{err.args[0]} is not set" if isinstance(err, KeyError) else str(err)
        raise FlexsegError(
            f"train.strategy: SLURM_NTASKS={env.get('SLURM_NTASKS', '?')}, but this process is not one task of an "
            f"srun step ({why}). Start every task with srun (hydra/launcher=slurm_ddp does), or set "
            "train.strategy=none.") from None
    return Cluster("SLURM", {k: list(v) for k, v in spec.items()}, (resolver.task_type, resolver.task_id),
                   resolver.num_accelerators()["GPU"] if gpus else 0)


@dataclass(frozen=True)
class Distribution:
    """The strategy a training runs under, and this process's part in it.

    Attributes:
        strategy: A `tf.distribute.Strategy` (TensorFlow's default one for `none`).
        kind: none | mirrored | multi_worker.
        cluster: The workers of a multi-worker training, else None.
    """

    strategy: tf.distribute.Strategy
    kind: Strategy
    cluster: Cluster | None = None

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def num_workers(self) -> int:
        return len(self.cluster.workers) if self.cluster else 1

    @property
    def worker_index(self) -> int:
        return self.cluster.index if self.cluster else 0

    @property
    def is_chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    def global_batch(self, per_replica: int) -> int:
        """Images per training step over all replicas."""
        return per_replica * self.num_replicas

    def shard(self) -> tuple[int, int] | None:
        """(workers, this worker's index) for the dataset of a multi-worker training, else None."""
        return (self.num_workers, self.worker_index) if self.cluster else None

    def describe(self) -> str:
        """One line for the run's `strategy` tag, e.g. "mirrored, 2 replicas"."""
        replicas = f"{self.num_replicas} replica" + ("s" if self.num_replicas != 1 else "")
        if self.cluster is None:
            return f"{self.kind.value}, {replicas}"
        return f"{self.kind.value}, {self.num_workers} workers ({self.cluster.source}), {replicas}"


def resolve_kind(choice: Strategy) -> tuple[Strategy, str]:
    """(the strategy to build, why): `auto` resolved; GPUs are only counted when no cluster decides."""
    choice = Strategy(choice)
    if choice != Strategy.auto:
        return choice, "train.strategy"
    kind, why = auto_strategy(0, os.environ)  # a cluster decides without GPUs (SLURM must set them first)
    return (kind, why) if kind == Strategy.multi_worker else auto_strategy(len(gpu_info()), os.environ)


def find_cluster() -> Cluster:
    """The cluster of a multi-worker training: TF_CONFIG, else the SLURM step.

    Raises:
        FlexsegError: Neither is there.
    """
    env = os.environ
    if env.get("TF_CONFIG"):
        return parse_tf_config(env["TF_CONFIG"])
    if env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS"):
        return slurm_cluster()
    raise FlexsegError(
        "train.strategy=multi_worker needs its cluster: set TF_CONFIG in every process (the cluster's "
        "addresses and this process's task), or start the tasks with srun in a SLURM job "
        "(hydra/launcher=slurm_ddp); on one machine use train.strategy=mirrored or none.")


def _mirrored() -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over the local GPUs, else over every logical CPU device."""
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


def build_distribution(choice: Strategy) -> Distribution:
    """`train.strategy` -> the strategy this process trains under (call before any TensorFlow op)."""
    kind, why = resolve_kind(choice)
    if kind == Strategy.none:
        return Distribution(tf.distribute.get_strategy(), kind)
    tf.get_logger().setLevel(logging.WARNING)  # not one INFO line per variable and all-reduce
    if kind == Strategy.mirrored:
        dist = Distribution(_mirrored(), kind)
    else:
        cluster = find_cluster()
        if cluster.source == "SLURM":
            resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
                tf.train.ClusterSpec(cluster.spec), task_type=cluster.task[0], task_id=cluster.task[1],
                num_accelerators={"GPU": cluster.gpus_per_task or 0}, rpc_layer="grpc")
            strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG itself
        _fix_keras_for_multi_worker()
        dist = Distribution(strategy, kind, cluster)
    log.info("train.strategy=%s: %s%s%s", Strategy(choice).value, dist.describe(),
             f" ({why})" if Strategy(choice) == Strategy.auto else "",
             "" if dist.is_chief else f"; worker {dist.worker_index} writes nothing, the chief does")
    return dist


def check_resume(dist: Distribution, resume: Resume) -> None:
    """Stop a multi-worker training asked to resume: only the chief could find and load the run.

    Raises:
        FlexsegError: `train.resume` is not false under several workers.
    """
    if dist.cluster is not None and Resume(resume) != Resume.false:
        raise FlexsegError(
            f"train.resume={Resume(resume).value} does not work with {dist.num_workers} workers (train.strategy="
            "multi_worker): each worker would have to find and load the same run. Continue the run on one machine "
            "(train.strategy=mirrored or none, train.resume_dir=<its run dir>), or start anew with train.resume=false.")


def worker_config(cfg: Config) -> Config:
    """The config a non-chief worker trains with: what steers training as on the chief, nothing that writes.

    ReduceLROnPlateau and early stopping act on the (global) epoch logs on every worker alike; the
    checkpoints, CSVs, plots, epoch pictures and MLflow logging are the chief's.
    """
    off = dict(checkpoint=False, last_checkpoint=False, csv_logs=False, plots=False, mlflow=False,
               epoch_change_infer=False, epoch_change_tiled=False)
    return dataclasses.replace(cfg, callbacks=dataclasses.replace(cfg.callbacks, **off))


def _fix_keras_for_multi_worker() -> None:
    """Make Keras 3's `fit` work under `MultiWorkerMirroredStrategy` (keras-team/keras#20585).

    Keras (3.15) reduces the first data batch across workers only to read its shapes, which fails
    on a (features, targets) batch, and averages each step's scalar logs with a reduction over an
    axis they lack. Here the shapes come from this worker's first replica, and step outputs are
    reduced locally as on one machine: the epoch logs are still global (Keras reads them from the
    metrics, whose variables TensorFlow sums over all replicas), and `predict_on_batch` (the epoch
    pictures) gathers nothing from the other workers, so the chief alone can call it.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def symbolic_build_from_local_batch(self, iterator=None, data_batch=None):  # type: ignore[no-untyped-def]
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                local = self.distribute_strategy.experimental_local_results
                data_batch = tf.nest.map_structure(lambda v: None if v is None else local(v)[0], next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = symbolic_build_from_local_batch
    tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False
