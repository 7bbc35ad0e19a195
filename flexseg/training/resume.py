"""`train.resume`: find the training run to continue, check it fits this config, restore its model.

A training run dir holds `checkpoints/last.keras` (model + optimizer state) and
`checkpoints/state.json` (see `flexseg.training.callbacks.state`). `train.resume`:
`false` starts a new run; `true` continues `train.resume_dir`, or else the newest training run of
the MLflow experiment whose run dir has a `state.json`; `auto` does the same when that run did not
finish, and starts a new run otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import keras
from omegaconf import OmegaConf

from flexseg import tracking
from flexseg.config.choices import Resume
from flexseg.config.store import flatten_tree
from flexseg.training.callbacks.state import LAST_CHECKPOINT, STATE_FILE, TrainingState, read_state
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"  # in checkpoints/: pid + host of the process training the run dir
# The only keys a resumed training may change: everything else must be what the run was trained with.
RESUME_FREE = ("train.epochs", "train.resume", "train.resume_dir")


@dataclass
class ResumePoint:
    """A training run to continue: its folder and its last committed state."""

    run_dir: Path
    state: TrainingState

    @property
    def last_checkpoint(self) -> Path:
        """The model file committed together with `state` (older states: `last.keras`)."""
        return self.run_dir / "checkpoints" / (self.state.checkpoint or LAST_CHECKPOINT)


def _state_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / STATE_FILE


def live_owner(run_dir: Path) -> Optional[int]:
    """Pid of another live process on this host that trains `run_dir`, else None.

    A process killed with SIGKILL leaves its lock behind; a dead pid does not count.
    """
    try:
        lock = json.loads((run_dir / "checkpoints" / LOCK_FILE).read_text())
        pid, host = int(lock["pid"]), str(lock["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by another user
        return pid
    return pid


@contextlib.contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Mark `run_dir` as being trained by this process for as long as the block runs."""
    path = run_dir / "checkpoints" / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def find_resume_point(
    resume: Resume, resume_dir: Optional[str], experiment_id: str, experiment: str, config_yaml: str = ""
) -> Optional[ResumePoint]:
    """The run `train.resume` / `train.resume_dir` ask to continue, or None for a new run.

    Raises:
        FlexsegError: `resume_dir` without a state; `true` with nothing to resume.
    """
    mode = Resume(resume)
    if mode == Resume.false:
        return None
    if resume_dir:
        run_dir = Path(resume_dir).resolve()
        if not _state_path(run_dir).is_file():
            raise FlexsegError(f"train.resume_dir='{resume_dir}' has no checkpoints/{STATE_FILE}; give the run dir of "
                               "a training that ran with callbacks.last_checkpoint=true.")
    else:
        runs = [r for r in tracking.training_runs(experiment_id) if r["run_dir"] and _state_path(Path(r["run_dir"])).is_file()]
        if not runs:
            if mode == Resume.true:
                raise FlexsegError(
                    f"train.resume=true: no training run of the MLflow experiment '{experiment}' has "
                    f"checkpoints/{STATE_FILE} on this machine. Set train.resume_dir=<run dir>, or train.resume=auto "
                    "(resume when possible, else start anew)."
                )
            log.info("train.resume=auto: nothing to resume in experiment '%s'; starting a new run", experiment)
            return None
        wanted = config_hash(config_yaml)
        same = [r for r in runs if (r["config_hash"] or _saved_hash(Path(r["run_dir"]))) == wanted]
        if not same:  # e.g. another job of a sweep: never continue a run with other settings
            newest = Path(runs[0]["run_dir"])
            diffs = "; ".join(config_differences(_saved_yaml(newest), config_yaml)[:8])
            if mode == Resume.true:
                raise FlexsegError(
                    f"train.resume=true: no training run of the MLflow experiment '{experiment}' was trained with "
                    f"this config (only {', '.join(RESUME_FREE)} may change); the newest, {newest}, differs in: "
                    f"{diffs}. Use its settings, name a run with train.resume_dir=<run dir>, or start anew with "
                    "train.resume=false."
                )
            log.info("train.resume=auto: no run of experiment '%s' has this config (the newest, %s, differs in: %s); "
                     "starting a new run", experiment, newest, diffs)
            return None
        run_dir = Path(same[0]["run_dir"])
    owner = live_owner(run_dir)
    if owner is not None:
        if mode == Resume.auto and not resume_dir:
            log.info("train.resume=auto: the newest run (%s) is being trained by process %d; starting a new run",
                     run_dir, owner)
            return None
        raise FlexsegError(f"train.resume: {run_dir} is still being trained by process {owner} on this machine; "
                           "wait for it, or stop it first.")
    state = read_state(_state_path(run_dir))
    if mode == Resume.auto and state.finished:
        log.info("train.resume=auto: the newest run (%s) finished; starting a new run", run_dir)
        return None
    return ResumePoint(run_dir, state)


def resume_command(overrides: list[str]) -> str:
    """The command that continues a training started with `overrides`: the same ones, `train.resume=auto`.

    `auto` finds the newest unfinished run of the experiment with the same config (`RESUME_FREE`
    keys aside), i.e. this one, and starts anew when there is none.
    """
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "train.resume"]
    return " ".join(["flexseg", *(shlex.quote(o) for o in kept), "train.resume=auto"])


def stop_notice(run_dir: Path, overrides: list[str]) -> tuple[str, str]:
    """What a training a signal stopped kept, and the command that continues it (`flexseg.stopping.graceful`)."""
    return f"training ended after its current step; that epoch is committed in {run_dir}.", resume_command(overrides)


def _comparable(config_yaml: str) -> dict[str, Any]:
    """{dotted key: value} of a resolved config YAML, without the keys a resume may change."""
    tree = OmegaConf.to_container(OmegaConf.create(config_yaml or "{}"), resolve=False)
    flat = flatten_tree(tree)
    return {k: v for k, v in flat.items() if not any(k == f or k.startswith(f + ".") for f in RESUME_FREE)}


def config_hash(config_yaml: str) -> str:
    """Hash of a training's resolved config, `RESUME_FREE` keys left out (tag `config_hash` of its run)."""
    text = json.dumps(_comparable(config_yaml), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_differences(saved_yaml: str, current_yaml: str) -> list[str]:
    """`key: trained A, now B` for every key (besides `RESUME_FREE`) whose value differs."""
    a, b = _comparable(saved_yaml), _comparable(current_yaml)
    return [f"{k}: trained {a.get(k)!r}, now {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _saved_yaml(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    return path.read_text() if path.is_file() else ""


def _saved_hash(run_dir: Path) -> str:
    """`config_hash` of a run dir's config.yaml (runs logged before the tag existed); '' without one."""
    text = _saved_yaml(run_dir)
    return config_hash(text) if text else ""


def check_compatible(run_dir: Path, config_yaml: str) -> None:
    """Stop when this call's config differs from the one the run was trained with (`RESUME_FREE` aside).

    Both sides are the resolved config YAML (`<run_dir>/config.yaml` and this call's).

    Raises:
        FlexsegError: Naming each differing key with both values.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        log.warning("no %s: cannot check the resumed run matches this config", saved_path)
        return
    diffs = config_differences(saved_path.read_text(), config_yaml)
    if diffs:
        raise FlexsegError(
            f"train.resume: the run in {run_dir} was trained with other settings ({'; '.join(diffs[:8])}). "
            f"Only {', '.join(RESUME_FREE)} may change on resume: use its settings (see {saved_path}), or start a "
            "new run with train.resume=false."
        )


def restore_model(model: keras.Model, point: ResumePoint) -> None:
    """Load weights and optimizer state (incl. step count and learning rate) from `last.keras`.

    Raises:
        FlexsegError: The checkpoint is missing or does not fit the compiled model.
    """
    path = point.last_checkpoint
    try:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(path)
    except Exception as err:  # Keras raises ValueError/OSError/KeyError for missing or mismatched files
        raise FlexsegError(f"train.resume: cannot load {path} into the model of this config: {err}") from err
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if steps != point.state.iterations:
        log.warning("%s holds %d optimizer steps but %s records %d: the run was killed between writing the two; "
                    "continuing from the checkpoint's weights", path, steps, STATE_FILE, point.state.iterations)
