"""Graceful stops: the first SIGINT / SIGTERM (Ctrl-C, SLURM, Kubernetes) ends a run at a safe point.

The CLI installs the handlers (`handle_signals`, in the main thread of its process only); a library
call or a test that runs a mode in-process gets none unless it installs them itself. Inside a
`graceful` block (training's `fit`, the file loops of eval / infer / tiled) the first signal only
records the request (`requested`): training ends after the current step, validating and committing
that epoch as `train.time_limit` ends one (`flexseg.training.callbacks.timing.SignalStop`); the file
loops stop after the current file (`check`). Leaving the block then raises `Interrupted`. Outside such
a block the signal raises `Interrupted` at once. A second signal ends the process at once (the
operating system's default action for it). The CLI turns `Interrupted` into one paragraph and exit
status 128 + the signal's number; `flexseg.tracking` ends the MLflow run as KILLED with its `tags`.

Imports nothing heavy: the CLI imports it before TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator, Optional

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESUME_TAG = "flexseg.resume"  # MLflow tag of a stopped training: the command that continues it
STOPPED_TAG = "flexseg.stopped_by"


class Interrupted(BaseException):
    """A run stopped by a signal. A `BaseException`, like `KeyboardInterrupt`: `except Exception` passes it on.

    Args:
        signum: The signal's number.
        done: What was finished and kept, for the message ("training stopped after its current step, ...").
        resume: The command that continues the run, when there is one.
    """

    def __init__(self, signum: int, done: str = "", resume: Optional[str] = None) -> None:
        super().__init__(signum, done, resume)
        self.signum, self.done, self.resume = int(signum), done, resume

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended (130, 143)."""
        return 128 + self.signum

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags of the stopped run: the signal, and how to continue."""
        return {STOPPED_TAG: self.signal_name, **({RESUME_TAG: self.resume} if self.resume else {})}

    def __str__(self) -> str:
        text = f"stopped by {self.signal_name}" + (f": {self.done}" if self.done else "")
        return text + (f" Continue with: {self.resume}" if self.resume else "")


_requested: Optional[int] = None  # the signal that asked to stop, once one did
_graceful_depth = 0  # >0 while a `graceful` block runs


def requested() -> Optional[int]:
    """The number of the signal that asked this process to stop, or None."""
    return _requested


def request(signum: int) -> None:
    """Record a stop request as the first signal does inside a `graceful` block (tests call it directly)."""
    global _requested
    _requested = int(signum)


def reset() -> None:
    """Forget a stop request (tests; a CLI process ends with its first one)."""
    global _requested
    _requested = None


def _on_signal(signum: int, frame: object) -> None:
    """First signal: stop at the next safe point (or now, outside a `graceful` block); later ones: at once."""
    for sig in SIGNALS:  # a second Ctrl-C / SIGTERM takes the operating system's default action
        signal.signal(sig, signal.SIG_DFL)
    request(signum)
    name = signal.Signals(signum).name
    if _graceful_depth == 0:
        raise Interrupted(signum)
    log.warning("%s received: finishing the current step or file, then stopping (send it again to stop at "
                "once, losing that work)", name)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Install the SIGINT / SIGTERM handlers for the block (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def graceful(done: str = "", resume: Optional[str] = None) -> Iterator[None]:
    """A block the first signal lets finish (training) or that polls `check` (file loops).

    Args:
        done: What was finished and kept when the block ends on a stop request (for the message).
        resume: The command that continues the work.

    Raises:
        Interrupted: On leaving the block after a stop request.
    """
    global _graceful_depth
    _graceful_depth += 1
    try:
        yield
    finally:
        _graceful_depth -= 1
    if _requested is not None:
        raise Interrupted(_requested, done, resume)


def check(done: str = "") -> None:
    """Raise `Interrupted` (with `done`: what is finished and kept) when a stop was requested."""
    if _requested is not None:
        raise Interrupted(_requested, done)
