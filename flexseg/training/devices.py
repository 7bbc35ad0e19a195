"""What this machine computes on, and the precision `train.precision=auto` picks for it.

`cpu_info` reads the CPU model, cores and the flags that matter for speed (AVX-512, AMX-BF16) from
`/proc/cpuinfo` (Linux) or `sysctl` (macOS); `gpu_info` asks TensorFlow for its GPUs and their
compute capability. `auto_precision` is pure: mixed_bfloat16 where the hardware has bf16 matrix
units (CPUs with AMX-BF16, NVIDIA GPUs of compute capability >= 8.0), mixed_float16 on older
NVIDIA GPUs (tensor cores since 7.0; Keras scales the loss), float32 otherwise.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import subprocess
from dataclasses import dataclass, field
from typing import Mapping, MutableMapping, Optional, Sequence

from flexseg.config.choices import Precision, Strategy

log = logging.getLogger(__name__)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class CpuInfo:
    """model: the CPU's name; cores: usable by this process; flags: those of `SPEED_FLAGS` it has."""

    model: str
    cores: int
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def amx_bf16(self) -> bool:
        return "amx_bf16" in self.flags


@dataclass(frozen=True)
class GpuInfo:
    """name: e.g. 'NVIDIA H100 80GB HBM3'; compute_capability: (major, minor), None when unknown."""

    name: str
    compute_capability: Optional[tuple[int, int]] = None

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability)) if self.compute_capability else "?"
        return f"{self.name} (compute capability {cc})"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """`/proc/cpuinfo` text -> (model name, the `SPEED_FLAGS` of its first processor)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split()) & frozenset(SPEED_FLAGS)
    return model, flags


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (cached: it does not change while we run)."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as fh:
            model, flags = parse_cpuinfo(fh.read())
    except OSError:
        if platform.system() == "Darwin":
            try:
                model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                       text=True, timeout=5).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
    return CpuInfo(model or platform.processor() or platform.machine(), _usable_cores(), flags)


@functools.cache
def gpu_info() -> tuple[GpuInfo, ...]:
    """The GPUs TensorFlow sees, with name and compute capability (imports TensorFlow; asked once per process)."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        cc = details.get("compute_capability")
        found.append(GpuInfo(details.get("device_name", device.name), tuple(cc) if cc else None))
    return tuple(found)


def auto_precision(cpu: CpuInfo, gpus: Sequence[GpuInfo]) -> Precision:
    """The precision `auto` means on this hardware (pure; see the module docstring)."""
    if gpus:
        ccs = [g.compute_capability for g in gpus]
        if all(cc is not None and cc >= (8, 0) for cc in ccs):
            return Precision.mixed_bfloat16
        if all(cc is not None and cc >= (7, 0) for cc in ccs):
            return Precision.mixed_float16
        return Precision.float32
    return Precision.mixed_bfloat16 if cpu.amx_bf16 else Precision.float32


def resolve_precision(choice: Precision) -> Precision:
    """`train.precision` -> a concrete policy (auto resolved for this machine)."""
    choice = Precision(choice)
    if choice != Precision.auto:
        return choice
    return auto_precision(cpu_info(), gpu_info())


def tensorflow_env_defaults(machine: str) -> dict[str, str]:
    """The environment TensorFlow should load with on a machine of `platform.machine()` `machine` (pure).

    x86-64: TF_ENABLE_ONEDNN_OPTS=1. TensorFlow turns its oneDNN kernels on by itself only on CPUs
    with AVX512_VNNI, AVX512_BF16 or AMX; on AVX2 CPUs (AMD EPYC, older Xeons) it leaves them off and
    runs Eigen's convolutions, whose gradients are 5-7x slower on a FlexUNet's 9x9 and 7x7 levels:
    a 512x512 training step of the 125 M reference model took 2.3x longer (benchmarks/bench_profile.py).
    """
    return {"TF_ENABLE_ONEDNN_OPTS": "1"} if machine.lower() in ("x86_64", "amd64") else {}


def set_tensorflow_env(env: MutableMapping[str, str] = os.environ) -> None:
    """Set `tensorflow_env_defaults` in `env` where the user has not set them.

    Call before TensorFlow is imported: it reads these variables once, when it loads.
    """
    for key, value in tensorflow_env_defaults(platform.machine()).items():
        env.setdefault(key, value)


def nvidia_driver_present() -> bool:
    """An NVIDIA driver is loaded (whether or not this TensorFlow build can use it)."""
    return os.path.exists("/proc/driver/nvidia/version")


def describe_devices() -> str:
    """One line for a run's `devices` tag: the GPUs, else the CPU with its cores and speed flags."""
    gpus = gpu_info()
    if gpus:
        return f"{len(gpus)} GPU: " + ", ".join(g.describe() for g in gpus)
    cpu = cpu_info()
    flags = " ".join(f for f in ("avx512f", "amx_bf16") if f in cpu.flags)
    return f"CPU: {cpu.model}, {cpu.cores} cores" + (f", {flags}" if flags else "")


def _slurm_tasks(env: Mapping[str, str]) -> int:
    """Tasks of the SLURM step (srun) this process is one of; 1 outside a step (an sbatch/salloc shell)."""
    value = env.get("SLURM_STEP_NUM_TASKS", "")
    return int(value) if value.isdigit() else 1


def auto_strategy(num_gpus: int, env: Mapping[str, str]) -> tuple[Strategy, str]:
    """(the strategy `train.strategy=auto` picks, why): pure, from the GPU count and the environment.

    TF_CONFIG naming several tasks, or a SLURM step of several tasks -> multi_worker; >= 2 local
    GPUs -> mirrored; else none.
    """
    tf_config = env.get("TF_CONFIG", "")
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster", {})
            tasks = sum(len(v) for v in cluster.values())
        except (ValueError, AttributeError):
            tasks = 0
        if tasks > 1:
            return Strategy.multi_worker, f"TF_CONFIG names {tasks} tasks"
    if _slurm_tasks(env) > 1:
        return Strategy.multi_worker, f"a SLURM step of {_slurm_tasks(env)} tasks"
    if num_gpus >= 2:
        return Strategy.mirrored, f"{num_gpus} local GPUs"
    return Strategy.none, f"{num_gpus} GPU" + ("" if num_gpus == 1 else "s") + ", no cluster"
