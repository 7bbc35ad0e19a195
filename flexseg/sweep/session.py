"""The sweeper's side of a sweep: the parent MLflow run, the job file, outcomes and the final summary.

Shared by flexseg's grid and Optuna sweepers (`hydra_plugins/flexseg_sweepers`). Jobs that fail are
recorded (a FAILED child run with the one-line reason) and the sweep goes on; the sweeper exits
non-zero at the end when any job failed.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from flexseg.config.choices import Direction
from flexseg.config.store import flatten_tree
from flexseg.sweep.job import override_key, write_sweep_file
from flexseg.sweep.objective import resolve_direction
from flexseg.sweep.report import cv_metrics, pick_best, summary_files

log = logging.getLogger(__name__)
TERMINAL = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class Outcome:
    """How one job ended: COMPLETE (with its objective), PRUNED or FAIL (with the reason)."""

    num: int
    overrides: list[str]
    state: str
    value: float = math.nan
    error: str = ""


def _error_text(ret: JobReturn) -> str:
    err = getattr(ret, "_return_value", None)  # JobReturn.return_value re-raises a failed job's error
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if type(err).__name__ in ("JobFailed", "FlexsegError") else f"{type(err).__name__}: {text}"


def override_values(overrides: Sequence[str]) -> dict[str, str]:
    """{key: value} of `key=value` overrides (`+`/`~` prefixes dropped)."""
    return {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}


@dataclass
class SweepSession:
    """One sweep's bookkeeping in the launching process.

    Attributes:
        config: The sweep's config (Hydra's, with the `hydra` node).
        sweeper: 'grid' or 'optuna'.
        space: What varies: key -> its sweep expression (`2,4`, `tag(log, interval(1e-4, 1e-2))`).
        reuse_tag: (tag, value) of an interrupted sweep's parent to reopen (Optuna study), or None.
        tags: Extra tags of the parent run.
        parallel: True when the launcher runs jobs in parallel (SQLite gets write-ahead logging).
    """

    config: DictConfig
    sweeper: str
    space: dict[str, str]
    reuse_tag: Optional[tuple[str, str]] = None
    tags: dict[str, str] = field(default_factory=dict)
    parallel: bool = False
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        with read_write(self.config.hydra.sweep), open_dict(self.config.hydra.sweep):
            self.config.hydra.sweep.dir = str(self.config.hydra.sweep.dir)  # ${now:...} once, for every job
        self.sweep_dir = Path(self.config.hydra.sweep.dir)
        train = self.config.train
        self.metric = str(train.objective)
        self.direction = resolve_direction(self.metric, Direction(str(getattr(train.objective_direction, "value",
                                                                               train.objective_direction))))
        self.uri = str(self.config.tracking.uri)
        self.experiment = str(self.config.tracking.experiment)
        self.trials: dict[str, dict[str, Any]] = {}

    def open(self) -> None:
        """Create (or reopen) the parent run and write the job file the jobs read."""
        from flexseg import tracking
        from flexseg.tracking import sweeps

        if self.parallel:
            tracking.setup(self.uri, self.experiment)  # create the store before parallel writers arrive
            sweeps.enable_wal(self.uri)
        tags = {"mode": "sweep", "sweeper": self.sweeper, "search_space": sweeps.search_space_tag(self.space),
                "sweep_dir": str(self.sweep_dir.resolve()), "objective": f"{self.direction} {self.metric}",
                "git_commit": tracking.git_commit(), **self.tags}
        name = tracking.run_name(self.experiment, "sweep", [f"{k}={v}" for k, v in self.space.items()])
        self.exp_id, self.parent_run_id, reopened = sweeps.open_parent(
            self.uri, self.experiment, name, tags, self._fixed_params(), self.reuse_tag)
        if reopened:
            sweeps.log_to_run(self.parent_run_id, tags={"sweep_dir": str(self.sweep_dir.resolve())})
        log.info("sweep parent run %s (%s); in the UI (make ui): http://127.0.0.1:5000/%s", self.parent_run_id,
                 "continued" if reopened else "new", tracking.ui_route(self.exp_id, self.parent_run_id))
        self._write()

    def _fixed_params(self) -> dict[str, str]:
        """The part of the config every job shares, flattened (`model.num_layers`: '6')."""
        task = OmegaConf.to_container(self.config, resolve=False)
        task.pop("hydra", None)  # type: ignore[union-attr]
        try:
            resolved = OmegaConf.to_container(OmegaConf.create(task), resolve=True)
        except Exception:  # an interpolation only a job can resolve: keep it as written
            resolved = task
        return {k: str(v) for k, v in flatten_tree(resolved).items()
                if k.split(".")[0] not in self.space and k not in self.space}

    def _write(self) -> None:
        write_sweep_file(self.sweep_dir, {"parent_run_id": self.parent_run_id, "experiment_id": self.exp_id,
                                          "tracking_uri": self.uri, "space": list(self.space), "trials": self.trials})

    def set_trials(self, trials: dict[int, dict[str, Any]]) -> None:
        """Tell the next jobs which Optuna trial each is (job number -> study, storage, trial id, number)."""
        self.trials.update({str(k): v for k, v in trials.items()})
        self._write()

    def record(self, first_num: int, batch: Sequence[Sequence[str]], results: Sequence[JobReturn],
               pruned: Sequence[bool] = (), need_value: bool = False) -> list[Outcome]:
        """Turn a launched batch's results into outcomes; a failed job without a run gets a FAILED one.

        With `need_value` (a search), a job that returns no finite objective counts as failed.
        """
        from flexseg import tracking
        from flexseg.tracking import sweeps

        outcomes = []
        for i, (all_overrides, ret) in enumerate(zip(batch, results)):
            num = first_num + i
            # What tells the jobs apart (the swept keys); a sweep of one job shows its full command.
            overrides = [o for o in all_overrides if override_key(o) in self.space] or all_overrides
            if ret.status == JobStatus.COMPLETED:
                value = ret.return_value
                value = float(value) if isinstance(value, (int, float)) else math.nan
                state = "PRUNED" if i < len(pruned) and pruned[i] else "COMPLETE"
                outcome = Outcome(num, list(overrides), state, value)
                if need_value and state == "COMPLETE" and not math.isfinite(value):
                    outcome.state, outcome.error = "FAIL", f"no finite objective ({self.metric} = {value})"
            else:
                outcome = Outcome(num, list(overrides), "FAIL", error=_error_text(ret))
                log.error("job %d (%s) failed: %s", num, " ".join(overrides), outcome.error)
            runs = sweeps.job_run_ids(self.exp_id, self.parent_run_id, num)
            if not runs and outcome.state == "FAIL":
                sweeps.set_sweep_job(self.parent_run_id, {"sweep_job": str(num)})
                try:
                    runs = [sweeps.record_failed_job(self.exp_id, tracking.run_name(self.experiment, "failed",
                                                                                    list(overrides)),
                                                     outcome.error, list(all_overrides))]
                finally:
                    sweeps.set_sweep_job(None)
            for run_id in runs:
                sweeps.log_to_run(run_id, tags={sweeps.TRIAL_STATE_TAG: outcome.state,
                                                **({sweeps.ERROR_TAG: outcome.error} if outcome.error else {})})
            outcomes.append(outcome)
        self.outcomes.extend(outcomes)
        return outcomes

    def finish(self, rows: list[dict[str, Any]], study: Any = None) -> dict[str, Any] | None:
        """Log the summary on the parent: best objective/run/params, leaderboard, plots, CV statistics."""
        from flexseg.tracking import sweeps

        children = sweeps.sweep_runs(self.exp_id, self.parent_run_id)
        by_job = {r["tags"].get("sweep_job"): r for r in children}
        for row in rows:
            child = by_job.get(str(row["job"]), {})
            row.setdefault("run_id", child.get("run_id", ""))
            row.setdefault("seconds", child.get("seconds") or math.nan)
        best = pick_best(rows, self.direction == "maximize")
        metrics: dict[str, float] = {}
        tags = {"trials_finished": str(sum(r["state"] in TERMINAL for r in rows)),
                "trials_failed": str(sum(r["state"] == "FAIL" for r in rows))}
        if best is not None:
            metrics["best_objective"] = best["objective"]
            tags["best_run_id"] = best["run_id"]
            tags.update({f"best_param.{k}": str(best[k]) for k in self.space if k in best})
        if "dataset.fold" in self.space:
            metrics.update(cv_metrics([c for c in children if c["tags"].get(sweeps.TRIAL_STATE_TAG) == "COMPLETE"]))
            tags["cv_folds"] = str(sum(1 for c in children if c["tags"].get(sweeps.TRIAL_STATE_TAG) == "COMPLETE"))
        sweeps.log_to_run(self.parent_run_id, metrics=metrics, tags=tags, step=len(rows))
        files = summary_files(rows, list(self.space), self.metric, self.direction, self.sweep_dir, study)
        sweeps.log_files_to_run(self.parent_run_id, files, "sweep")
        sweeps.end_run(self.parent_run_id, "FINISHED")
        if best is not None:
            log.info("sweep done: %d jobs; best %s %.4f (job %s, run %s); leaderboard %s", len(rows), self.metric,
                     best["objective"], best["job"], best["run_id"], files[0])
        return best

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "FAIL"]


def exit_on_failures(session: SweepSession) -> None:
    """After the sweep: exit 2 with one line per failed job when any failed (the others finished)."""
    failed = session.failures()
    if not failed:
        return
    lines = [f"  job {o.num} ({' '.join(o.overrides)}): {o.error}" for o in failed]
    sys.stderr.write(f"flexseg: error: {len(failed)} of {len(session.outcomes)} sweep jobs failed; the others "
                        f"finished and are compared in the parent run {session.parent_run_id}:\n"
                        + "\n".join(lines) + "\n")
    raise SystemExit(2)
