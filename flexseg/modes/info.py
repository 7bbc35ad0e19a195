"""`flexseg mode=info`: versions, devices, what `auto` picks here, and whether the tracking store answers.

Run it first on a new machine (or in a SLURM job) to see that TensorFlow sees the GPUs, which
precision and distribution strategy a training will use, and whether MLflow is reachable. Prints a
short report to stdout; it also runs without TensorFlow installed (and then says how to install it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import platform
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from flexseg.config.choices import Precision, Strategy
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.training.devices import auto_precision, auto_strategy, cpu_info, nvidia_driver_present

log = logging.getLogger(__name__)
PACKAGES = ("flexseg", "tensorflow", "tensorflow-cpu", "keras", "mlflow", "hydra-core", "optuna", "numpy")
PROBE_TIMEOUT_S = 3.0


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> list[str]:
    """'name version' lines of the packages that matter (installed ones only) and Python's."""
    lines = [f"python {platform.python_version()} ({sys.executable})"]
    lines += [f"{name} {v}" for name in PACKAGES if (v := _version(name))]
    if _version("tensorflow") and _version("tensorflow-cpu"):
        lines.append("warning: both tensorflow and tensorflow-cpu are installed; they share files. Keep one: "
                     "pip uninstall -y tensorflow tensorflow-cpu, then pip install -e '.[cpu]' or '.[cuda]'")
    return lines


def tensorflow_devices() -> tuple[list[str], list, str]:
    """(device lines, GpuInfo list, TensorFlow build line); imports TensorFlow when it is installed."""
    if importlib.util.find_spec("tensorflow") is None:
        return ["TensorFlow is not installed: pip install -e '.[cpu]' (CPU) or pip install -e '.[cuda]' "
                "(NVIDIA GPU)"], [], "none"
    import tensorflow as tf

    from flexseg.training.devices import gpu_info

    build = tf.sysconfig.get_build_info()
    kind = (f"CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}" if build.get("is_cuda_build")
            else "CPU-only build")
    gpus = gpu_info()
    lines = [f"GPU {i}: {g.describe()}" for i, g in enumerate(gpus)]
    if not gpus and nvidia_driver_present():
        lines.append("warning: an NVIDIA driver is loaded but TensorFlow sees no GPU"
                     + (" (this is the CPU-only build): pip uninstall -y tensorflow-cpu && pip install -e '.[cuda]'"
                        if not build.get("is_cuda_build") else ": check CUDA_VISIBLE_DEVICES and the driver version"))
    logical = tf.config.list_logical_devices("CPU")
    if len(logical) > 1:
        lines.append(f"{len(logical)} logical CPU devices")
    return lines, gpus, kind


def cpu_line() -> str:
    cpu = cpu_info()
    flags = ", ".join(f"{name} {'yes' if name in cpu.flags else 'no'}" for name in ("avx512f", "amx_bf16"))
    return f"CPU: {cpu.model}; {cpu.cores} cores usable; {flags}"


def probe_tracking(uri: str) -> str:
    """Whether the tracking store answers: an HTTP server's /health, or a SQLite file's MLflow tables."""
    if uri.startswith(("http://", "https://")):
        start = time.monotonic()
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S) as resp:
                return f"answers (HTTP {resp.status} in {time.monotonic() - start:.2f} s)"
        except (urllib.error.URLError, OSError) as err:
            return f"does NOT answer ({getattr(err, 'reason', err)}); start it with `make server`"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        path = path if path.is_absolute() else Path.cwd() / path
        if not path.is_file():
            return f"{path} does not exist yet (the first run creates it)"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=PROBE_TIMEOUT_S) as db:
                count = db.execute("select count(*) from runs").fetchone()[0]
            return f"answers ({path}, {count} runs)"
        except sqlite3.Error as err:
            return f"{path} is not a readable MLflow store ({err})"
    return "not probed (only http(s):// and sqlite:/// stores are)"


def report(cfg: Config) -> str:
    """The whole report as text."""
    device_lines, gpus, build = tensorflow_devices()
    precision = auto_precision(cpu_info(), gpus)
    strategy, why = auto_strategy(len(gpus), os.environ)
    lines = ["== versions ==", *versions(), f"TensorFlow build: {build}",
             "== devices ==", cpu_line(), *(device_lines or ["GPUs: none"]),
             "== what auto picks here ==",
             f"train.precision=auto -> {precision}"
             + (f" (configured: {cfg.train.precision})" if cfg.train.precision != Precision.auto else ""),
             f"train.strategy=auto -> {strategy} ({why})"
             + (f" (configured: {cfg.train.strategy})" if cfg.train.strategy != Strategy.auto else ""),
             "== tracking ==", f"tracking.uri={cfg.tracking.uri}: {probe_tracking(cfg.tracking.uri)}"]
    return "\n".join(lines)


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Print the report (and keep a copy as info.txt in this call's run dir)."""
    text = report(cfg)
    sys.stdout.write(text + "\n")
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    (ctx.run_dir / "info.txt").write_text(text + "\n")
    return {}
