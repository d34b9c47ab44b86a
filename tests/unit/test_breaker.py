"""The circuit breaker, with an injected clock (no sleeps)."""

from __future__ import annotations

from semcache_core.resilience import BreakerState, CircuitBreaker, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown=2.0, clock=clock)
    assert b.allow() and b.allow_write()
    b.record_failure()
    assert b.allow() and not b.allow_write()  # writes pause after any failure
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.now = 1.9
    assert not b.allow()
    clock.now = 2.0
    assert b.state is BreakerState.HALF_OPEN and b.allow() and not b.allow_write()
    b.record_failure()  # a failed probe re-opens at once
    assert b.state is BreakerState.OPEN and b.opened_count == 2
    clock.now = 4.5
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow_write()


def test_success_resets_the_count() -> None:
    b = CircuitBreaker(failures=2, cooldown=1.0, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is BreakerState.CLOSED


def test_rate_limited_log() -> None:
    clock = Clock()
    log = RateLimitedLog(interval=10.0, clock=clock)
    exc = ConnectionError("down")
    assert log.error("lookup", exc)
    assert not log.error("lookup", exc)
    assert log.error("store", exc)  # per operation
    clock.now = 10.0
    assert log.error("lookup", exc)
