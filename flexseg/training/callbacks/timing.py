"""Wall-clock callbacks: `train.time_limit` (and `SignalStop`, a SIGINT / SIGTERM) end a training at a step
boundary; `EpochTimer` logs where each epoch's time went.

The epoch in progress stops at the first step that ends past the budget; Keras then validates it
and runs every epoch-end callback (best checkpoint, last checkpoint, logs, pictures), so the
shortened epoch is a normal epoch of the record. A run ended by its time limit is not "stopped
early": `train.resume` continues it.
"""

from __future__ import annotations

import logging
import time

import keras

from flexseg import stopping

log = logging.getLogger(__name__)


class TimeLimit(keras.callbacks.Callback):
    """Stop `fit` once `seconds` of wall time have passed since training began.

    Args:
        seconds: The budget; the clock starts in `on_train_begin` (after tracing-free setup).
        clock: Seconds since an arbitrary origin (tests pass a fake one).

    Attributes:
        triggered: The budget ended the training.
    """

    def __init__(self, seconds: float, clock=time.perf_counter) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.seconds, self.clock = float(seconds), clock
        self.triggered = False
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start, self.triggered = self.clock(), False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.triggered and self.clock() - self._start >= self.seconds:
            self.triggered = True
            self.model.stop_training = True
            log.info("train.time_limit=%gs reached after step %d of this epoch: ending the training after this "
                     "epoch's validation", self.seconds, batch + 1)


class SignalStop(keras.callbacks.Callback):
    """End `fit` after the current step once a SIGINT / SIGTERM asked to stop (`flexseg.stopping`).

    As with `TimeLimit`, Keras then validates the shortened epoch and runs every epoch-end callback
    (the checkpoint + state commit included); a request during validation or the epoch-end work ends
    the training after that epoch. In `evaluate` it stops after the current batch. A training it ends
    is not "stopped early": `train.resume` continues it.

    Args:
        evaluating: Given to `evaluate` (not `fit`, whose validation always runs whole).
    """

    def __init__(self, evaluating: bool = False) -> None:
        super().__init__()
        self.evaluating = evaluating

    def _stop(self, attribute: str, where: str) -> None:
        if stopping.requested() is not None and not getattr(self.model, attribute, False):
            setattr(self.model, attribute, True)
            log.info("stop requested: ending the %s after %s", "training" if attribute == "stop_training"
                     else "evaluation", where)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._stop("stop_training", f"step {batch + 1} of this epoch (after its validation)")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._stop("stop_training", f"epoch {epoch + 1}")

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.evaluating:
            self._stop("stop_evaluating", f"batch {batch + 1}")


class EpochTimer(keras.callbacks.Callback):
    """Where each epoch's wall time went: training steps, validation, and the rest (epoch-end work).

    Place it first. An epoch runs from its `on_epoch_begin` to the next one's (or the end of
    training), so the epoch-end callbacks after it (checkpoints, logs, pictures) are inside it.
    After every epoch the log gets one line; `epochs` keeps (epoch, wall, steps, validation) seconds.
    """

    def __init__(self, clock=time.perf_counter) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.clock = clock
        self.epochs: list[tuple[int, float, float, float]] = []
        self._epoch: int | None = None
        self._begin = self._steps = self._valid = self._mark = 0.0

    def _close(self) -> None:
        if self._epoch is None:
            return
        wall = self.clock() - self._begin
        self.epochs.append((self._epoch + 1, wall, self._steps, self._valid))
        rest = wall - self._steps - self._valid
        log.info("epoch %d took %.1f s: training steps %.1f s, validation %.1f s, epoch-end work %.1f s (%.0f %%)",
                 self._epoch + 1, wall, self._steps, self._valid, rest, 100 * rest / max(wall, 1e-9))
        self._epoch = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._close()
        self._epoch, self._begin, self._steps, self._valid = epoch, self.clock(), 0.0, 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._mark = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += self.clock() - self._mark

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._mark = self.clock()

    def on_test_end(self, logs: dict | None = None) -> None:
        if self._epoch is not None:
            self._valid += self.clock() - self._mark

    def on_train_end(self, logs: dict | None = None) -> None:
        self._close()
