"""`FlushTimer` alone: the daemon thread that writes due counts while no call does (its
effect on Redis: tests/integration/test_hardening.py)."""

from __future__ import annotations

import threading

from semcache_core.counters import FlushTimer

BOUND = 10.0  # generous: a bound on a hang, not a timing claim


def test_it_calls_flush_survives_errors_and_ends_when_flush_says_so() -> None:
    calls: list[int] = []
    errors: list[Exception] = []
    third = threading.Event()

    def flush() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Redis hiccup")
        if len(calls) == 3:
            third.set()
            return False  # the engine is gone
        return True

    timer = FlushTimer(flush, 0.01, errors.append)
    timer.start()
    thread = timer.thread
    assert thread is not None and thread.daemon
    assert third.wait(BOUND)
    thread.join(BOUND)
    assert not thread.is_alive() and len(calls) == 3
    assert [str(e) for e in errors] == ["Redis hiccup"]


def test_close_stops_it_and_it_never_starts_again() -> None:
    ticked = threading.Event()

    def flush() -> bool:
        ticked.set()
        return True

    timer = FlushTimer(flush, 0.01, lambda exc: None)
    timer.start()
    timer.start()  # idempotent
    thread = timer.thread
    assert thread is not None and ticked.wait(BOUND)
    timer.close(wait=BOUND)
    assert not thread.is_alive()
    timer.start()
    assert timer.thread is thread


def test_close_without_waiting_still_stops_it() -> None:
    timer = FlushTimer(lambda: True, 3600.0, lambda exc: None)
    timer.start()
    thread = timer.thread
    assert thread is not None
    timer.close(wait=0)  # as aclose does on an event loop
    thread.join(BOUND)  # the stop event wakes it at once, not after an hour
    assert not thread.is_alive()
