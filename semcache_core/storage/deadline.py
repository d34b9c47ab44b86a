"""The connection classes that keep a user call's deadline (`semcache_core.deadline`).

`budgeted` and `abudgeted` mix the budget into whatever connection class a client's URL
chose (TCP, TLS, a unix socket): before a trip is sent, the call's budget may refuse it
(`BudgetSpent`, nothing sent); each reply is read with the socket's timeout lowered to
what the budget has left, and the wait is charged to it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..deadline import current


class BudgetSpent(RedisError):
    """The call's Redis budget is spent: the trip was not started (nothing was sent), or
    its read was cut short at what the budget had left.

    Not a redis-py ``TimeoutError``: redis-py would drop the connection for a refused
    trip, which sent nothing, and a cluster client would count a node failure."""


def _refuse_when_spent() -> None:
    budget = current()
    if budget is not None and not budget.may_start():
        raise BudgetSpent("the call's Redis budget is spent")


def _cut(exc: RedisTimeoutError, timeout: float, socket_timeout: float | None) -> None:
    """A read cut short by the budget (before ``socket_timeout``) says Redis is slow, not
    that it is gone: it is `BudgetSpent`, which does not open the circuit breaker. (The
    connection is dropped all the same: its reply may still come.)"""
    if socket_timeout is None or timeout < socket_timeout:
        raise BudgetSpent("the call's Redis budget ran out during the read") from exc


class _SyncBudgeted:
    """Mixed into a redis-py connection class."""

    socket_timeout: float | None
    _sock: Any

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _refuse_when_spent()
        super().send_packed_command(command, check_health)  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        if budget is None or self._sock is None:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        timeout = budget.timeout(self.socket_timeout)
        lowered = timeout != self.socket_timeout  # else the socket has it (two syscalls)
        if lowered:
            self._sock.settimeout(timeout)
        started = time.monotonic()
        timed_out = False
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except RedisTimeoutError as exc:
            timed_out = True
            _cut(exc, timeout, self.socket_timeout)
            raise
        finally:
            budget.charge(time.monotonic() - started, timed_out=timed_out)
            if lowered and self._sock is not None:  # (a timed-out read disconnects)
                self._sock.settimeout(self.socket_timeout)


class _AsyncBudgeted:
    """Mixed into a ``redis.asyncio`` connection class."""

    socket_timeout: float | None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _refuse_when_spent()
        await super().send_packed_command(command, check_health)  # type: ignore[misc]

    async def read_response(
        self, disable_decoding: bool = False, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        budget = current()
        if budget is None or timeout is not None:
            return await super().read_response(disable_decoding, timeout, **kwargs)  # type: ignore[misc]
        saved = self.socket_timeout
        self.socket_timeout = budget.timeout(saved)  # this read's; the connection is ours
        started = time.monotonic()
        timed_out = False
        try:
            return await super().read_response(disable_decoding, None, **kwargs)  # type: ignore[misc]
        except RedisTimeoutError as exc:
            timed_out = True
            _cut(exc, self.socket_timeout, saved)
            raise
        finally:
            self.socket_timeout = saved
            budget.charge(time.monotonic() - started, timed_out=timed_out)


_MADE: dict[type, type] = {}
_MADE_LOCK = threading.Lock()


def _mixed(mixin: type, cls: type) -> type:
    if issubclass(cls, mixin):
        return cls
    with _MADE_LOCK:
        made = _MADE.get(cls)
        if made is None:
            made = _MADE[cls] = type(f"Budgeted{cls.__name__}", (mixin, cls), {})
        return made


def budgeted(cls: type) -> type:
    """``cls`` (a redis-py connection class) keeping the call's budget."""
    return _mixed(_SyncBudgeted, cls)


def abudgeted(cls: type) -> type:
    """``cls`` (a ``redis.asyncio`` connection class) keeping the call's budget."""
    return _mixed(_AsyncBudgeted, cls)
