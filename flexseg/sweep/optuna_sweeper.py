"""flexseg's Optuna sweep: ask a batch of trials, launch them as jobs, tell the results; repeat to n_trials.

Why our own sweeper (measured, Dec 2026): hydra-optuna-sweeper 1.3.0 pins optuna<3, whose RDB storage
predates SQLAlchemy 2 (which MLflow 3 needs); hydra-optuna-mlflow-sweeper 0.1.3 replaces the same
plugin module and is young. Optuna 5's ask/tell API over its RDB storage makes a sweeper that
continues after a kill in ~150 lines: the study lives in SQLite beside the MLflow store, finished
trials are never rerun, trials a killed sweep left RUNNING are marked failed, and the total of
finished trials (complete, pruned, failed) is `n_trials`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig

from flexseg.sweep.grid import launcher_is_parallel
from flexseg.sweep.session import SweepSession, exit_on_failures
from flexseg.sweep.space import parse_space, trial_overrides
from flexseg.sweep.trial import open_storage

log = logging.getLogger(__name__)


def default_storage(tracking_uri: str) -> str:
    """`optuna.db` beside a SQLite MLflow store, else in the working directory."""
    from flexseg.tracking import resolve_uri

    uri = resolve_uri(tracking_uri)
    folder = Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:///") else Path.cwd()
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def default_study_name(experiment: str, search: str, fixed: list[str], space: dict[str, str]) -> str:
    """Same command, same study: `<experiment>-<search>-<hash of the fixed overrides and the space>`."""
    key = "\n".join(sorted(fixed)) + "\n" + "\n".join(f"{k}={v}" for k, v in sorted(space.items()))
    return f"{experiment}-{search}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _batch_size(sweeper: Any) -> int:
    if sweeper.n_jobs:
        return int(sweeper.n_jobs)
    launcher = sweeper.config.hydra.launcher
    for key in ("n_jobs", "array_parallelism"):
        if key in launcher and launcher[key] and int(launcher[key]) > 0:
            return int(launcher[key])
    return 1


def run_optuna(sweeper: Any, arguments: list[str]) -> list[Any]:
    """The sweep loop of `FlexsegOptunaSweeper` (see the module docstring)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = sweeper.config
    expressions, fixed = {k: str(v) for k, v in sweeper.params.items()}, []
    for o in OverridesParser.create(config_loader=sweeper.hydra_context.config_loader).parse_overrides(arguments):
        if o.is_sweep_override():  # `key=a,b` on the command line joins the search space
            expressions[o.get_key_element()] = f"choice({','.join(o.sweep_string_iterator())})"
        else:
            fixed.append(f"{o.get_key_element()}={o.get_value_element_as_str()}")
    space = parse_space(expressions)
    search = str(cfg.hydra.runtime.choices.get("hparams_search") or "optuna")
    study_name = sweeper.study_name or default_study_name(str(cfg.tracking.experiment), search, fixed, expressions)
    storage_url = sweeper.storage or default_storage(str(cfg.tracking.uri))
    session = SweepSession(cfg, "optuna", expressions, reuse_tag=("optuna_study", study_name),
                           tags={"optuna_study": study_name, "optuna_storage": storage_url, "hparams_search": search},
                           parallel=launcher_is_parallel(cfg))
    lock = FileLock(_lock_path(storage_url, study_name, session.sweep_dir))
    try:
        lock.acquire(timeout=30)  # a sweep killed a moment ago may still be exiting
    except Timeout:
        sys.stderr.write(f"flexseg: error: another sweep is running the Optuna study '{study_name}' "
                         f"({storage_url}); wait for it, or give this one hydra.sweeper.study_name=OTHER.\n")
        raise SystemExit(2) from None
    try:
        storage = open_storage(storage_url)
        study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                    sampler=_sampler(sweeper, storage, study_name), pruner=_built(sweeper.pruner),
                                    direction=session.direction)
        session.open()
        _fail_interrupted(study, session, sweeper.n_trials)
        returns = _loop(sweeper, study, space, fixed, session, storage_url)
        session.finish(_rows(study, list(expressions)), study)
    finally:
        lock.release()
    exit_on_failures(session)
    return returns


def _built(spec: Any) -> Any:
    """A sampler/pruner: Hydra already instantiated it from `_target_` (a plain dict config is built here)."""
    if spec is None or not isinstance(spec, (dict, DictConfig)):
        return spec
    return instantiate(spec)


def _sampler(sweeper: Any, storage: Any, study_name: str) -> Any:
    """The configured sampler; a continued study seeds it with `seed + trials so far`, so it does not
    propose the first trials' values again."""
    import optuna

    spec = sweeper.config.hydra.sweeper.get("sampler")
    try:
        done = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # a new study
        done = 0
    if done and spec is not None and "seed" in spec and spec.seed is not None:
        return instantiate(spec, seed=int(spec.seed) + done)
    return _built(sweeper.sampler)


def _lock_path(storage_url: str, study: str, sweep_dir: Path) -> str:
    folder = Path(storage_url[len("sqlite:///"):]).parent if storage_url.startswith("sqlite:///") else sweep_dir.parent
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f".optuna-{hashlib.sha1(study.encode()).hexdigest()[:12]}.lock")


def _fail_interrupted(study: Any, session: SweepSession, n_trials: int) -> None:
    """Trials a killed sweep left RUNNING: FAIL in the study, KILLED in MLflow (they count as finished);
    their values are queued again, as far as `n_trials` leaves room, so the interrupted configurations
    are still tried (a queued trial never asked would linger in the study)."""
    from optuna.trial import TrialState

    from flexseg.tracking import sweeps

    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in interrupted:
        study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted: the sweep was killed")
        study.tell(t.number, state=TrialState.FAIL)
    room = n_trials - sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    for t in [t for t in interrupted if t.params][:max(0, room)]:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    for t in interrupted:
        for run_id in sweeps.job_run_ids(session.exp_id, session.parent_run_id, t.number):
            sweeps.log_to_run(run_id, tags={sweeps.TRIAL_STATE_TAG: "FAIL", sweeps.ERROR_TAG: "interrupted"})
            sweeps.end_run(run_id, "KILLED")
        log.warning("trial %d was left running by a killed sweep: recorded as failed", t.number)


def _loop(sweeper: Any, study: Any, space: dict[str, Any], fixed: list[str], session: SweepSession,
          storage_url: str) -> list[Any]:
    from optuna.trial import TrialState

    returns, size = [], _batch_size(sweeper)
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    if finished >= sweeper.n_trials:
        log.warning("the study '%s' already has %d finished trials (hydra.sweeper.n_trials=%d): nothing to run. "
                    "Raise hydra.sweeper.n_trials to continue it, or give hydra.sweeper.study_name=NEW for a new "
                    "study.", study.study_name, finished, sweeper.n_trials)
    elif finished:
        log.info("continuing the study '%s': %d of %d trials finished", study.study_name, finished, sweeper.n_trials)
    while True:
        remaining = sweeper.n_trials - sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        if remaining <= 0:
            return returns
        trials = [study.ask(space) for _ in range(min(size, remaining))]
        batch = [[*fixed, *trial_overrides(t.params)] for t in trials]
        session.set_trials({t.number: {"study": study.study_name, "storage": storage_url, "trial_id": t._trial_id,
                                       "number": t.number} for t in trials})
        results = sweeper.launcher.launch(batch, initial_job_idx=trials[0].number)
        pruned = [bool(study._storage.get_trial(t._trial_id).user_attrs.get("pruned")) for t in trials]
        outcomes = session.record(trials[0].number, batch, results, pruned, need_value=True)
        for trial, o in zip(trials, outcomes):
            if o.error:
                trial.set_user_attr("error", o.error)
            if o.state == "COMPLETE":
                study.tell(trial, o.value)
            else:
                study.tell(trial, state=TrialState.PRUNED if o.state == "PRUNED" else TrialState.FAIL)
        returns.append(results)
        log.info("trials %s: %s", ", ".join(str(o.num) for o in outcomes),
                 ", ".join(f"{o.state.lower()}" + (f" {o.value:.4f}" if o.state == "COMPLETE" else "") for o in outcomes))


def _rows(study: Any, keys: list[str]) -> list[dict[str, Any]]:
    """One leaderboard row per trial of the study (this and earlier invocations)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else math.nan
        rows.append({"job": t.number, "state": t.state.name, "objective": value,
                     "seconds": t.duration.total_seconds() if t.duration else math.nan,
                     "error": t.user_attrs.get("error", ""), **{k: t.params.get(k, "") for k in keys}})
    return rows
