"""Fail-open machinery: a circuit breaker and rate-limited error logging. No I/O.

The breaker is shared by the sync and async drivers: its state is plain data behind a
thread lock, and it never sleeps or awaits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

logger = logging.getLogger("semcache")


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a sick Redis for a cool-down after consecutive failures.

    * closed: calls go through; ``failures`` consecutive failures open it.
    * open: calls are refused until ``cooldown`` seconds have passed.
    * half-open: calls go through as probes; one success closes it, a failure re-opens it.

    Writes are refused while the last call failed (`allow_write`), even before the breaker
    opens: a lookup that just timed out is followed by the write of the answer the LLM
    gave, and that write would most likely time out too, doubling the latency the user
    pays for a sick Redis.

    Args:
        failures: consecutive failures that open the breaker.
        cooldown: seconds to stay open.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self, failures: int = 3, cooldown: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a read go to Redis now?"""
        with self._lock:
            return self._state_locked() is not BreakerState.OPEN

    def allow_write(self) -> bool:
        """May a write go to Redis now? Not while the last call failed."""
        with self._lock:
            return self._consecutive == 0 and self._state_locked() is BreakerState.CLOSED

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            state = self._state_locked()
            if state is BreakerState.HALF_OPEN or (
                state is BreakerState.CLOSED and self._consecutive >= self.failures
            ):
                self._opened_at = self._clock()
                self.opened_count += 1


class RateLimitedLog:
    """Logs an operation's errors at most once per ``interval`` seconds, with a count of
    those it held back, so a dead Redis does not flood the application's logs."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, operation: str, exc: BaseException) -> bool:
        """Log ``exc`` for ``operation`` unless one was logged recently; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(operation)
            if last is not None and now - last < self.interval:
                self._suppressed[operation] = self._suppressed.get(operation, 0) + 1
                return False
            held_back = self._suppressed.pop(operation, 0)
            self._last[operation] = now
        more = f" ({held_back} similar errors not logged)" if held_back else ""
        logger.warning(
            "semcache %s failed, serving as a miss: %s: %s%s",
            operation,
            type(exc).__name__,
            exc,
            more,
            exc_info=not _is_expected(exc),
        )
        return True


def _is_expected(exc: BaseException) -> bool:
    """Connection trouble is expected in operation and needs no traceback."""
    from redis.exceptions import ConnectionError, TimeoutError

    from .errors import BackendUnavailableError

    return isinstance(exc, (ConnectionError, TimeoutError, OSError, BackendUnavailableError))
