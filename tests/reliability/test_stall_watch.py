"""`StallWatch` excuses what stalls the whole process, and nothing a cache could cause on
its own loop: the fault tests subtract its figures from a call's time."""

from __future__ import annotations

import time

from tests.reliability.conftest import StallWatch


def _gil_held(watch: StallWatch) -> tuple[float, float]:
    """(seconds one C call held the GIL, the stall the watch saw during it)."""
    started = time.monotonic()
    sum(range(30_000_000))  # one C call: no other thread runs until it returns
    finished = time.monotonic()
    return finished - started, watch.within(started, finished)


def test_a_call_that_holds_the_gil_is_a_stall() -> None:
    with StallWatch() as watch:
        time.sleep(0.05)
        held, stalled = _gil_held(watch)
        time.sleep(0.05)
    assert held > 0.1, "the machine summed too fast to stall anything"
    assert stalled >= 0.5 * held


def test_blocking_io_is_not_a_stall() -> None:
    """Sleeping (as a blocking socket read does) releases the GIL: the watch keeps waking,
    so a cache that blocked its event loop is not excused. Measured against a GIL hold of
    the same length in the same run, so a loaded machine's own lag cancels out."""
    with StallWatch() as watch:
        time.sleep(0.05)
        held, stalled_gil = _gil_held(watch)
        started = time.monotonic()
        time.sleep(held)
        finished = time.monotonic()
        time.sleep(0.05)
    stalled_io = watch.within(started, finished)
    assert held > 0.1, "the machine summed too fast to stall anything"
    assert stalled_io < stalled_gil - 0.25 * held, (stalled_io, stalled_gil, held)
