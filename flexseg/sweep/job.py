"""What one job of a `flexseg -m` sweep knows: its number, the sweep's parent run, its Optuna trial.

The sweeper (`flexseg.sweep.session`) writes `<sweep dir>/.flexseg_sweep.json` before it launches
jobs; a job reads it through Hydra's job config, so this works with every launcher (in-process,
joblib worker processes, submitit on a cluster with a shared filesystem). No TensorFlow or MLflow here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)
SWEEP_FILE = ".flexseg_sweep.json"


@dataclass
class SweepJob:
    """One job of a sweep.

    Attributes:
        sweep_dir: The sweep's output folder (Hydra's `hydra.sweep.dir`).
        num: Hydra's job number (equal to the Optuna trial number in an Optuna sweep).
        parent_run_id: The sweep's parent MLflow run (None when the sweeper is not flexseg's).
        trial: For an Optuna sweep: `study`, `storage`, `trial_id`, `number`; else None.
        pruner: The Optuna pruner's config (`hydra.sweeper.pruner`), or None.
        threads: TensorFlow threads this job may use (cores / parallel jobs), or None for all.
        space: The keys the sweep varies.
    """

    sweep_dir: Path
    num: int
    parent_run_id: Optional[str] = None
    trial: Optional[dict[str, Any]] = None
    pruner: Optional[dict[str, Any]] = None
    threads: Optional[int] = None
    space: tuple[str, ...] = ()

    def first_varying(self, overrides: list[str]) -> list[str]:
        """`overrides` with the swept keys first (run names show what tells the jobs apart)."""
        varying = [o for o in overrides if override_key(o) in self.space]
        return [*varying, *(o for o in overrides if o not in varying)]

    def tags(self) -> dict[str, str]:
        """Tags every run of this job carries (`sweep_job`, `trial_number`)."""
        tags = {"sweep_job": str(self.num)}
        if self.trial is not None:
            tags["trial_number"] = str(self.trial["number"])
        return tags


def override_key(override: str) -> str:
    """The key of a `key=value` override (`+`/`~` prefixes dropped)."""
    return override.split("=", 1)[0].lstrip("+~")


def write_sweep_file(sweep_dir: Path, info: dict[str, Any]) -> None:
    """Write the sweep's job information atomically (temp file, then rename)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / f"{SWEEP_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, sweep_dir / SWEEP_FILE)


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def current_job() -> Optional[SweepJob]:
    """The sweep job this Hydra job is, or None for a single run (`flexseg` without `-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(hc.sweep.dir)
    info = read_sweep_file(sweep_dir)
    pruner = OmegaConf.to_container(hc.sweeper.pruner) if "pruner" in hc.sweeper else None
    launcher = OmegaConf.to_container(hc.launcher)
    return SweepJob(sweep_dir=sweep_dir, num=int(hc.job.num), parent_run_id=info.get("parent_run_id"),
                    trial=info.get("trials", {}).get(str(hc.job.num)), pruner=pruner,  # type: ignore[arg-type]
                    threads=thread_budget(launcher), space=tuple(info.get("space", ())))  # type: ignore[arg-type]


def thread_budget(launcher: dict[str, Any], cores: Optional[int] = None) -> Optional[int]:
    """TensorFlow threads per job so that parallel jobs do not oversubscribe the cores.

    joblib: cores // n_jobs (n_jobs -1: one per core); submitit: `cpus_per_task` when set; the
    basic launcher runs one job at a time and keeps every core (None).
    """
    cores = cores or os.cpu_count() or 1
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        n_jobs = cores if n_jobs < 1 else n_jobs
        return max(1, cores // n_jobs)
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    return None


def limit_threads(threads: Optional[int]) -> None:
    """Cap TensorFlow's thread pools (before its runtime starts; later calls are left alone)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # already running: a reused worker process of an earlier job, same budget
        pass


def begin(job: Optional[SweepJob]) -> None:
    """Enter a sweep job: its runs join the sweep's parent; TensorFlow gets this job's thread budget.

    Outside a sweep MLflow is not imported for it (mode=info never needs MLflow: 2 s saved).
    """
    if job is None:
        loaded = sys.modules.get("flexseg.tracking.sweeps")
        if loaded is not None:
            loaded.set_sweep_job(None, None)
        return
    from flexseg.tracking.sweeps import set_sweep_job

    set_sweep_job(job.parent_run_id, job.tags())
    limit_threads(job.threads)
    if job.threads:
        log.info("sweep job %d: TensorFlow uses %d thread(s), its share of the cores", job.num, job.threads)


def end() -> None:
    """Leave the sweep job (the basic launcher runs the next job in the same process)."""
    from flexseg.tracking.sweeps import set_sweep_job

    set_sweep_job(None)
