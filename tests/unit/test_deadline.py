"""The per-call deadline's bookkeeping (`semcache_core.deadline`): no I/O."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from semcache_core import deadline
from semcache_core.deadline import Budget, BudgetLedger, DeadlineExceededError, RoundTrips
from semcache_core.errors import BackendTimeoutError


def _trip(budget: Budget, seconds: float = 0.0, exc: BaseException | None = None) -> Any:
    token = deadline.trip_begin(budget)
    assert deadline.cut_at() is not None
    time.sleep(seconds)
    return deadline.trip_end(budget, token, exc)


def test_a_spent_budget_refuses_the_next_trip_before_anything_is_sent() -> None:
    budget = Budget(0.01, 0.1)
    assert _trip(budget, 0.012) is None
    assert budget.remaining() <= 0
    with pytest.raises(DeadlineExceededError):
        deadline.trip_begin(budget)
    assert deadline.cut_at() is None


def test_no_trip_is_started_with_less_left_than_recent_trips_took() -> None:
    trips = RoundTrips()
    for _ in range(RoundTrips.WINDOW):
        trips.completed(0.08)  # every trip is slow: Redis is
    budget = Budget(0.1, 0.1, trips)
    # The call's first trip always goes (the estimate must keep learning) ...
    token = deadline.trip_begin(budget)
    budget._started -= 0.08  # it took 80 ms, like the others
    deadline.trip_end(budget, token, None)
    # ... a later one is refused while less is left than trips take.
    assert budget.remaining() < trips.seconds
    with pytest.raises(DeadlineExceededError):
        deadline.trip_begin(budget)
    # Some slow trips among fast ones (a busy loop) do not make Redis look slow.
    busy = RoundTrips()
    for seconds in (0.0005, 0.06, 0.0004, 0.07):
        busy.completed(seconds)
    assert busy.seconds <= 0.0005


def test_a_timeout_the_budget_imposed_is_the_deadline_and_raises_the_estimate() -> None:
    budget = Budget(0.1, 0.1)
    budget.spent = 0.06  # the trip is given 40 ms, less than socket_timeout
    cut = _trip(budget, 0.0, redis.TimeoutError("Timeout reading from socket"))
    assert isinstance(cut, DeadlineExceededError) and isinstance(cut, BackendTimeoutError)
    # A trip given the whole socket_timeout that times out is the command's own timeout.
    fresh = Budget(0.1, 0.1)
    assert _trip(fresh, 0.0, redis.TimeoutError("x")) is None
    # Other errors are never the deadline's.
    assert _trip(Budget(0.1, 0.1), 0.0, redis.ConnectionError("x")) is None


def test_nested_trips_count_once_and_only_inside_a_running_call() -> None:
    budget = Budget(1.0, 0.1)
    assert deadline.current() is None
    with deadline.running(budget):
        assert deadline.current() is budget
        outer = deadline.trip_begin(budget)
        inner = deadline.trip_begin(budget)
        assert inner is None
        deadline.trip_end(budget, inner, None)
        deadline.trip_end(budget, outer, None)
        assert budget.trips_made == 1
        with deadline.suspended():
            assert deadline.current() is None
    assert deadline.current() is None and not budget.live


def test_the_ledger_hands_each_store_its_own_lookups_budget() -> None:
    ledger = BudgetLedger(size=2)
    a1, a2, b = Budget(0.1, 0.1), Budget(0.1, 0.1), Budget(0.1, 0.1)
    ledger.park("a", a1)
    ledger.park("a", a2)
    ledger.park("b", b)
    assert ledger.take("a") is a1 and ledger.take("a") is a2 and ledger.take("a") is None
    ledger.park("c", Budget(0.1, 0.1))
    ledger.park("d", Budget(0.1, 0.1))
    assert ledger.take("b") is None  # evicted: that store gets a fresh budget
    old = BudgetLedger(seconds=0.0)
    old.park("k", b)
    time.sleep(0.001)
    assert old.take("k") is None  # too late: a fresh budget
