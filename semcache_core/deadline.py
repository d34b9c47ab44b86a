"""A deadline per call: one Redis time budget for a lookup and the store of its answer.

Without it, each Redis round trip of a call gets its own ``socket_timeout``: with Redis
slow but alive (every reply 80 ms, under the 100 ms timeout) a miss paid every round
trip of its lookup and of its store, several hundred ms. Here a lookup starts a
`Budget` of ``call_timeout`` seconds (default: ``socket_timeout``) and every round trip
of that lookup, and of the store of the same request after the LLM call, gets only what
is left of it:

* the drivers make the call's budget the current one (`running`) while a lookup or a
  store runs; between the two (the LLM call) nothing is spent. The store finds its
  lookup's budget by the request's entry key (`BudgetLedger`);
* each public method of the request path's store is one *trip* (`trip_begin` /
  `trip_end`, applied by `storage.errors.boundary`): it is refused before it sends
  anything once the budget is spent, and its time is deducted from the budget when it
  returns. While it runs, the absolute deadline of the trip is in `cut_at`, which the
  connections of the request path's pools read (`storage.budgeted`): a read, a send
  or a connect waits at most what is left, and a connection cut in the middle of a
  reply is disconnected (redis-py's own handling of a timeout), never handed on with a
  reply still to read;
* a trip that timed out while the budget, not ``socket_timeout``, bounded it raises
  `DeadlineExceededError` (a `BackendTimeoutError`): the lookup is a miss, the store is
  skipped, counted in ``stats()["deadline"]`` and logged at a bounded rate;
* a trip is not started when less is left than this engine's recent round trips took
  (`RoundTrips`; never the call's first trip, so the estimate keeps learning): it would
  most likely be cut, and a cut connection must be opened again (a ``HELLO`` round
  trip) by a later call. The rest of the call is skipped as above, nothing sent.

Administration calls (their own patient store) and the background flush never run
under a budget. No I/O here.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from .errors import BackendTimeoutError

# The budget of the lookup or store running in this context (task or thread).
_RUNNING: ContextVar[Budget | None] = ContextVar("semcache_budget", default=None)
# The absolute deadline (time.monotonic) of the store method running now, read by the
# request path's connections; None outside a trip.
_CUT_AT: ContextVar[float | None] = ContextVar("semcache_cut_at", default=None)

LEDGER_SIZE = 10_000  # lookups whose store has not come yet (an LLM call in flight)
LEDGER_SECONDS = 600.0  # a store later than this after its lookup gets a fresh budget


class DeadlineExceededError(BackendTimeoutError):
    """A lookup and its store spent their Redis time budget (``call_timeout``): the
    rest of the call was skipped (the lookup is a miss, the store not written)."""


class RoundTrips:
    """How long one engine's round trips take: the shortest of its last few completed
    trips (a crowded event loop or a busy machine makes some trips long, not all of
    them; a slow Redis makes every one long), raised to the length of any trip the
    deadline cut. Shared by threads and tasks; a lost update is harmless."""

    __slots__ = ("_next", "_recent", "seconds")

    WINDOW = 8

    def __init__(self) -> None:
        self.seconds = 0.0
        self._recent = [0.0] * self.WINDOW
        self._next = 0

    def completed(self, elapsed: float) -> None:
        i = self._next
        self._next = (i + 1) % self.WINDOW
        self._recent[i] = elapsed
        self.seconds = min(self._recent)

    def cut(self, elapsed: float) -> None:
        self.seconds = max(self.seconds, elapsed)


class Budget:
    """The Redis time one call (a lookup and the store of its answer) may still spend.

    Args:
        total: seconds for the lookup and the store together.
        socket_timeout: the per-command timeout; a timeout of a trip that was given
            less than this is the budget's, not the command's.
        trips: the engine's round-trip estimate (a fresh one if not given).
    """

    __slots__ = (
        "_depth",
        "_given",
        "_started",
        "live",
        "socket_timeout",
        "spent",
        "total",
        "trips",
        "trips_made",
    )

    def __init__(
        self, total: float, socket_timeout: float, trips: RoundTrips | None = None
    ) -> None:
        self.total = total
        self.spent = 0.0
        self.socket_timeout = socket_timeout
        self.trips = trips if trips is not None else RoundTrips()
        self.trips_made = 0
        self.live = False  # set while its lookup or store runs (see `running`)
        self._depth = 0
        self._started = 0.0
        self._given = 0.0

    def remaining(self) -> float:
        return self.total - self.spent

    def exhausted(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the call's Redis time budget ({self.total * 1000:.0f} ms, call_timeout) ran "
            f"out after {self.spent * 1000:.0f} ms: the rest of the call was skipped"
        )


@contextmanager
def running(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the current one for the lookup or store run inside."""
    budget.live = True
    token = _RUNNING.set(budget)
    try:
        yield budget
    finally:
        _RUNNING.reset(token)
        budget.live = False


@contextmanager
def suspended() -> Iterator[None]:
    """No budget inside: waiting on purpose (a coalesced waiter polling its leader's
    lock waits up to ``coalesce_wait``, not for a slow Redis)."""
    token = _RUNNING.set(None)
    try:
        yield
    finally:
        _RUNNING.reset(token)


def restart() -> None:
    """Start the current call's deadline again: a coalesced waiter looks again after
    waiting on purpose for its leader's answer (up to ``coalesce_wait``)."""
    budget = current()
    if budget is not None:
        budget.spent = 0.0
        budget.trips_made = 0


def current() -> Budget | None:
    budget = _RUNNING.get()
    return budget if budget is not None and budget.live else None


def out_of_time() -> bool:
    """Whether the current call's budget is spent (its optional round trips, such as
    the counters' flush, are then left for later)."""
    budget = current()
    return budget is not None and budget.remaining() <= 0


def cut_at() -> float | None:
    """The absolute deadline (``time.monotonic``) of the trip running now, if any."""
    return _CUT_AT.get()


@contextmanager
def uncharged() -> Iterator[None]:
    """Time spent inside is not the call's: no deadline while it runs, and the running
    trip's deadline moves later by as much (opening a TCP connection: the kernel
    accepts it however slow Redis is, ``connect_timeout`` bounds it)."""
    cut = _CUT_AT.get()
    if cut is None:
        yield
        return
    budget = current()
    started = time.monotonic()
    token = _CUT_AT.set(None)
    try:
        yield
    finally:
        _CUT_AT.reset(token)
        took = time.monotonic() - started
        _CUT_AT.set(cut + took)  # trip_end resets it with the trip's own token
        if budget is not None and budget._depth:
            budget._started += took


def trip_begin(budget: Budget) -> Token[float | None] | None:
    """Start a trip (one store method) on ``budget``: refused once it is spent. Returns
    the token `trip_end` needs (``None`` for a trip inside a trip: the outer one counts).

    Raises:
        DeadlineExceededError: nothing is left, or less than recent trips took (not on
            the call's first trip); nothing was sent.
    """
    if budget._depth:
        budget._depth += 1
        return None
    left = budget.total - budget.spent
    if left <= 0 or (budget.trips_made and left < budget.trips.seconds):
        raise budget.exhausted()
    budget.trips_made += 1
    budget._depth = 1
    budget._given = left
    budget._started = now = time.monotonic()
    return _CUT_AT.set(now + left)


def trip_end(
    budget: Budget, token: Token[float | None] | None, exc: BaseException | None
) -> DeadlineExceededError | None:
    """End a trip: deduct its time. Returns the error to raise instead of ``exc`` when
    ``exc`` is a timeout the budget imposed (it gave the trip less than
    ``socket_timeout``), else ``None``."""
    budget._depth -= 1
    if token is None:
        return None
    _CUT_AT.reset(token)
    elapsed = time.monotonic() - budget._started
    budget.spent += elapsed
    if exc is None:
        budget.trips.completed(elapsed)
        return None
    if budget._given >= budget.socket_timeout or not _is_timeout(exc):
        return None
    budget.trips.cut(elapsed)
    return budget.exhausted()


def _is_timeout(exc: BaseException) -> bool:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisTimeoutError, BackendTimeoutError, TimeoutError))


class BudgetLedger:
    """The budgets of lookups whose store has not come yet, by entry key: the store of
    the same request (after the LLM call) continues its lookup's budget. Bounded in
    size and age: an evicted or late store gets a fresh budget. Concurrent identical
    requests each park one budget; each store takes the oldest."""

    def __init__(self, size: int = LEDGER_SIZE, seconds: float = LEDGER_SECONDS) -> None:
        self.size = size
        self.seconds = seconds
        self._lock = threading.Lock()
        self._parked: OrderedDict[str, list[tuple[float, Budget]]] = OrderedDict()

    def park(self, key: str, budget: Budget) -> None:
        now = time.monotonic()
        with self._lock:
            queue = self._parked.get(key)
            if queue is None:
                self._parked[key] = [(now, budget)]
                if len(self._parked) > self.size:
                    self._parked.popitem(last=False)
            else:
                queue.append((now, budget))
                del queue[:-8]  # identical requests in flight: the newest few

    def take(self, key: str) -> Budget | None:
        with self._lock:
            queue = self._parked.get(key)
            if not queue:
                return None
            parked_at, budget = queue.pop(0)
            if not queue:
                del self._parked[key]
        if time.monotonic() - parked_at > self.seconds:
            return None
        return budget

    def __len__(self) -> int:
        with self._lock:
            return len(self._parked)
