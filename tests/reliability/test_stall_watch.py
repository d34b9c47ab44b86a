"""`StallWatch` excuses what stalls the whole process, and nothing a cache could cause on
its own loop: the fault tests subtract its figures from a call's time."""

from __future__ import annotations

import time

from tests.reliability.conftest import StallWatch


def test_a_call_that_holds_the_gil_is_a_stall() -> None:
    with StallWatch() as watch:
        time.sleep(0.05)
        started = time.monotonic()
        sum(range(30_000_000))  # one C call: no other thread runs until it returns
        finished = time.monotonic()
        time.sleep(0.05)
    held = finished - started
    assert held > 0.1, "the machine summed too fast to stall anything"
    assert watch.within(started, finished) >= 0.5 * held


def test_blocking_io_is_not_a_stall() -> None:
    """Sleeping (as a blocking socket read does) releases the GIL: the watch wakes on time,
    so a cache that blocked its event loop is not excused."""
    with StallWatch() as watch:
        started = time.monotonic()
        time.sleep(0.3)
        finished = time.monotonic()
    assert watch.within(started, finished) < 0.1
