"""Connections of the request path's pools that honour the call's deadline.

redis-py has no per-command timeout, so the connection reads the deadline of the trip
in progress (`semcache_core.deadline.cut_at`, a context variable: one task's or one
thread's) and waits at most what is left of it:

* sync (`redis.Connection`): the socket timeout of each reply read is passed to
  redis-py's own ``read_response(timeout=...)``, and each send is bounded the same way.
  A read that times out makes redis-py disconnect the connection, so no reply is left
  unread for the next command.
* async (`redis.asyncio.Connection`): ``socket_timeout`` is what is left, so redis-py's
  own ``asyncio`` timeouts (read, send) end the wait, and its timeout handling
  disconnects the connection.

Outside a trip (administration calls have their own pools; the background flush) the
configured timeouts apply unchanged. Not charged to the call: opening the TCP connection
(`deadline.uncharged`: the kernel accepts it however slow Redis is; ``connect_timeout``
bounds it), and waiting for a free pooled connection (this process's congestion,
``pool_timeout``), which includes opening a new connection's handshake.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any

import redis
import redis.asyncio as aredis
from redis.utils import SENTINEL

from ..deadline import cut_at, uncharged

# Left to wait when the deadline has just passed: long enough for a reply already in
# the socket buffer, never a wait.
_EXPIRED = 1e-4


def _bounded(configured: float | None) -> float | None:
    """``configured``, or what is left of the running trip if that is less."""
    cut = cut_at()
    if cut is None:
        return configured
    left = max(_EXPIRED, cut - time.monotonic())
    return left if configured is None or left < configured else configured


class _SyncBudgeted:
    """Mixed into a sync redis-py connection class (TCP, TLS, Unix socket)."""

    _sock: Any

    def _connect(self) -> Any:
        with uncharged():
            return super()._connect()  # type: ignore[misc]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if cut_at() is None or not self._sock:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        sock = self._sock
        sock.settimeout(_bounded(self.socket_timeout))  # type: ignore[attr-defined]
        try:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
        finally:
            if self._sock is sock:  # still connected
                sock.settimeout(self.socket_timeout)  # type: ignore[attr-defined]

    def read_response(
        self, disable_decoding: bool = False, *, timeout: Any = SENTINEL, **kwargs: Any
    ) -> Any:
        if timeout is SENTINEL and cut_at() is not None:
            timeout = _bounded(self.socket_timeout)  # type: ignore[attr-defined]
        return super().read_response(  # type: ignore[misc]
            disable_decoding, timeout=timeout, **kwargs
        )


class _AsyncBudgeted:
    """Mixed into a redis.asyncio connection class (TCP, TLS, Unix socket)."""

    _configured_timeout: float | None = None

    @property
    def socket_timeout(self) -> float | None:
        return _bounded(self._configured_timeout)

    @socket_timeout.setter
    def socket_timeout(self, value: float | None) -> None:
        self._configured_timeout = value

    async def _connect(self) -> Any:
        with uncharged():
            return await super()._connect()  # type: ignore[misc]


@functools.cache
def budgeted_class(base: type) -> type:
    """``base`` (a redis-py connection class) honouring the call's deadline."""
    mixin: type
    if issubclass(base, aredis.connection.AbstractConnection):
        mixin = _AsyncBudgeted
    elif issubclass(base, redis.connection.AbstractConnection):
        mixin = _SyncBudgeted
    else:
        raise TypeError(f"not a redis-py connection class: {base!r}")
    return type(f"Budgeted{base.__name__}", (mixin, base), {"__module__": __name__})


def budget_pool(pool: Any) -> Any:
    """Make a freshly built pool (no connection made yet) open budgeted connections, and
    not charge the call for waiting for one (nor for opening it)."""
    pool.connection_class = budgeted_class(pool.connection_class)
    get = pool.get_connection
    if inspect.iscoroutinefunction(get):

        async def get_connection(*args: Any, **kwargs: Any) -> Any:
            with uncharged():
                return await get(*args, **kwargs)

    else:

        def get_connection(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with uncharged():
                return get(*args, **kwargs)

    pool.get_connection = get_connection
    return pool
