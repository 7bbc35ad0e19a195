"""flexseg.stopping: the first SIGINT / SIGTERM asks to stop at a safe point, a second one ends the process."""

from __future__ import annotations

import os
import signal
import threading
from typing import Iterator

import pytest

from flexseg import stopping


@pytest.fixture(autouse=True)
def _no_request() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # no handlers there: a signal would kill us
        pytest.skip("signal handlers can only be installed in the main thread")
    stopping.reset()
    yield
    stopping.reset()


def test_a_signal_inside_a_graceful_block_waits_for_its_end() -> None:
    finished = []
    with stopping.handle_signals():
        with pytest.raises(stopping.Interrupted) as info:
            with stopping.graceful("the step was finished", "flexseg x=1 train.resume=auto"):
                os.kill(os.getpid(), signal.SIGTERM)
                finished.append("rest of the block")  # the handler only recorded the request
                assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a second one ends the process
                assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
    assert finished == ["rest of the block"]
    stop = info.value
    assert (stop.signal_name, stop.exit_code) == ("SIGTERM", 143)
    assert stop.tags == {"flexseg.stopped_by": "SIGTERM", "flexseg.resume": "flexseg x=1 train.resume=auto"}
    assert str(stop) == ("stopped by SIGTERM: the step was finished Continue with: flexseg x=1 train.resume=auto")


def test_handlers_are_restored_and_absent_outside_the_cli() -> None:
    before = signal.getsignal(signal.SIGINT)
    with stopping.handle_signals():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
    stopping.check()  # no handlers, no request: library calls and in-process tests run as before
    with stopping.graceful():
        pass


def test_a_signal_outside_a_graceful_block_stops_at_once() -> None:
    with stopping.handle_signals(), pytest.raises(stopping.Interrupted) as info:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between two bytecodes of this thread
            pass
        pytest.fail("the signal did not stop the block")
    assert info.value.exit_code == 130 and info.value.tags == {"flexseg.stopped_by": "SIGINT"}


def test_check_raises_once_a_stop_was_requested() -> None:
    stopping.check("nothing yet")
    stopping.request(signal.SIGTERM)
    with pytest.raises(stopping.Interrupted, match="stopped by SIGTERM: 3 of 5 files written"):
        stopping.check("3 of 5 files written")
