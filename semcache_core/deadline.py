"""A deadline per user call: the Redis wait one lookup and its store may add.

Each trip to Redis has its own ``socket_timeout``; a lookup makes one to three trips and
its store one or two more, so a slow but living Redis (every reply late, none past the
timeout) used to add several timeouts to the user's call. A `CallBudget` is the Redis
wait left for one call: ``socket_timeout`` in all, shared by the lookup, the counters'
flush after it and the store of the model's answer.

* Only waiting for Redis is charged (the time of each reply read), not the embedder, the
  verifier or the model call between the lookup and its store.
* Each read waits at most what is left (the socket's timeout is lowered for that read):
  a reply still late then is a timeout, and the call goes on as a miss or a skipped
  store.
* A trip is not started when less is left than about the fastest trip of the last second took
  (`TripClock`): it would most likely be cut, and a cut read costs its connection.
* A store gets at least `STORE_FLOOR` even after a lookup that spent everything: the
  answer of a call that paid for a model is worth one short try.

So a lookup plus its store adds at most ``socket_timeout + STORE_FLOOR`` of Redis wait.
Set-up work (creating the index, learning the slot map, opening a client) is not
charged: it runs once, with the plain per-trip timeouts (`unbounded`).

The budget travels in a context variable, so it reaches every connection a call uses
(both drivers, one node or a cluster's) without passing through the store's methods;
the connection classes of `storage.deadline` read it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable

# A store's try after a lookup that spent the whole budget.
STORE_FLOOR = 0.010
# The window of `TripClock.fastest`.
RECENT_SECONDS = 1.0


class TripClock:
    """How long recent trips took, per engine: about the fastest of the last second,
    which is what the next trip is expected to take at least. O(1) per trip: the
    fastest is kept until a faster trip comes or it is a second old (then the next trip
    replaces it); plain attribute writes, a race between threads only picks one of two
    recent figures."""

    __slots__ = ("_at", "_clock", "_fastest")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fastest = 0.0
        self._at = float("-inf")

    def observe(self, seconds: float) -> None:
        now = self._clock()
        if seconds <= self._fastest or now - self._at > RECENT_SECONDS:
            self._fastest, self._at = seconds, now

    def fastest(self) -> float:
        return self._fastest


class CallBudget:
    """The Redis wait left for one lookup (and its flush), or one store.

    Args:
        seconds: the wait allowed.
        trips: the engine's `TripClock`.
    """

    __slots__ = ("cut", "left", "trips")

    def __init__(self, seconds: float, trips: TripClock) -> None:
        self.left = seconds
        self.trips = trips
        self.cut = False  # a trip was refused or cut short

    def __repr__(self) -> str:
        return f"CallBudget(left={self.left:.4f}, cut={self.cut})"

    def may_start(self) -> bool:
        """Before a trip is sent: not when it would most likely be cut."""
        if self.left <= 0.0 or self.left < self.trips.fastest():
            self.cut = True
            return False
        return True

    def timeout(self, socket_timeout: float | None) -> float:
        """The longest the next read may wait."""
        left = max(self.left, 0.0)
        return left if socket_timeout is None else min(socket_timeout, left)

    def charge(self, seconds: float, *, timed_out: bool = False) -> None:
        self.left -= seconds
        if timed_out:
            self.cut = True
        else:
            self.trips.observe(seconds)


class BudgetSlot:
    """Held by a request: the budget of its latest lookup, whose store gets what that
    lookup left (`store_budget`). Each lookup gets a budget of its own, so concurrent
    calls that share one request object never charge each other's."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: CallBudget | None = None


def lookup_budget(slot: BudgetSlot, seconds: float, trips: TripClock) -> CallBudget:
    """A lookup's budget: ``seconds`` (``socket_timeout``), noted for its store."""
    budget = slot.last = CallBudget(seconds, trips)
    return budget


def store_budget(slot: BudgetSlot, seconds: float, trips: TripClock) -> CallBudget:
    """A store's budget: what its lookup left (all of ``seconds`` without one), and at
    least `STORE_FLOOR`."""
    left = slot.last.left if slot.last is not None else seconds
    return CallBudget(max(left, STORE_FLOOR), trips)


_BUDGET: contextvars.ContextVar[CallBudget | None] = contextvars.ContextVar(
    "semcache_call_budget", default=None
)


class spending:
    """Charge the Redis trips made inside to ``budget`` (``None``: plain timeouts). A
    class, not a generator: it runs on every lookup, L1 hits included."""

    __slots__ = ("_budget", "_token")

    def __init__(self, budget: CallBudget | None) -> None:
        self._budget = budget

    def __enter__(self) -> CallBudget | None:
        self._token = _BUDGET.set(self._budget)
        return self._budget

    def __exit__(self, *exc: object) -> None:
        _BUDGET.reset(self._token)


def unbounded() -> spending:
    """Set-up work inside a call: not charged, plain per-trip timeouts."""
    return spending(None)


def release() -> None:
    """In a task of its own (which copied its starter's context): charge nothing."""
    _BUDGET.set(None)


def current() -> CallBudget | None:
    return _BUDGET.get()
