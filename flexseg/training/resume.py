"""`train.resume`: find the training run to continue, check it fits this config, restore its model.

A training run dir holds `checkpoints/last.keras` (model + optimizer state) and
`checkpoints/state.json` (see `flexseg.training.callbacks.state`). `train.resume`:
`false` starts a new run; `true` continues `train.resume_dir`, or else the newest training run of
the MLflow experiment whose run dir has a `state.json`; `auto` does the same when that run did not
finish, and starts a new run otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import keras
from omegaconf import OmegaConf

from flexseg import tracking
from flexseg.training.callbacks.state import LAST_CHECKPOINT, STATE_FILE, TrainingState, read_state
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

RESUME_CHOICES = ("false", "true", "auto")
LOCK_FILE = "train.lock"  # in checkpoints/: pid + host of the process training the run dir
# Config sections that must match for the saved weights to fit the model this config builds.
MUST_MATCH = ("model", "dataset.classes")


@dataclass
class ResumePoint:
    """A training run to continue: its folder and its last committed state."""

    run_dir: Path
    state: TrainingState

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / LAST_CHECKPOINT


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
    resume: str, resume_dir: Optional[str], experiment_id: str, experiment: str
) -> Optional[ResumePoint]:
    """The run `train.resume` / `train.resume_dir` ask to continue, or None for a new run.

    Raises:
        FlexsegError: An unknown `train.resume` value; `resume_dir` without a state; `true` with
            nothing to resume.
    """
    mode = str(resume).lower()
    if mode not in RESUME_CHOICES:
        raise FlexsegError(f"train.resume={resume!r} is unknown; use one of {', '.join(RESUME_CHOICES)}.")
    if mode == "false":
        return None
    if resume_dir:
        run_dir = Path(resume_dir).resolve()
        if not _state_path(run_dir).is_file():
            raise FlexsegError(f"train.resume_dir='{resume_dir}' has no checkpoints/{STATE_FILE}; give the run dir of "
                               "a training that ran with callbacks.last_checkpoint=true.")
    else:
        dirs = [Path(r["run_dir"]) for r in tracking.training_runs(experiment_id) if r["run_dir"]]
        found = [d for d in dirs if _state_path(d).is_file()]
        if not found:
            if mode == "true":
                raise FlexsegError(
                    f"train.resume=true: no training run of the MLflow experiment '{experiment}' has "
                    f"checkpoints/{STATE_FILE} on this machine. Set train.resume_dir=<run dir>, or train.resume=auto "
                    "(resume when possible, else start anew)."
                )
            log.info("train.resume=auto: nothing to resume in experiment '%s'; starting a new run", experiment)
            return None
        run_dir = found[0]
    owner = live_owner(run_dir)
    if owner is not None:
        if mode == "auto" and not resume_dir:
            log.info("train.resume=auto: the newest run (%s) is being trained by process %d; starting a new run",
                     run_dir, owner)
            return None
        raise FlexsegError(f"train.resume: {run_dir} is still being trained by process {owner} on this machine; "
                           "wait for it, or stop it first.")
    state = read_state(_state_path(run_dir))
    if mode == "auto" and state.finished:
        log.info("train.resume=auto: the newest run (%s) finished; starting a new run", run_dir)
        return None
    return ResumePoint(run_dir, state)


def _section(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def check_compatible(run_dir: Path, config_yaml: str) -> None:
    """Stop when this call's model/classes differ from the ones the run was trained with.

    Both sides are the resolved config YAML (`<run_dir>/config.yaml` and this call's).

    Raises:
        FlexsegError: Naming each differing key with both values.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        log.warning("no %s: cannot check the resumed model matches this config", saved_path)
        return
    saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=False)
    current = OmegaConf.to_container(OmegaConf.create(config_yaml), resolve=False)
    diffs: list[str] = []
    for section in MUST_MATCH:
        a, b = _section(saved, section), _section(current, section)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{section}.{k}: trained {a.get(k)!r}, now {b.get(k)!r}" for k in sorted(set(a) | set(b))
                      if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{section}: trained {a!r}, now {b!r}")
    if diffs:
        raise FlexsegError(
            f"train.resume: the run in {run_dir} was trained with another model/classes ({'; '.join(diffs)}). "
            f"Resume with the same settings (see {saved_path}), or start a new run with train.resume=false."
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
