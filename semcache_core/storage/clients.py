"""Redis clients under semcache's fail-fast policy: no retries, short timeouts, a
bounded pool that queues. Administration calls get clients of their own
(`make_admin_client`): patient timeouts, bounded retries, and a pool a burst of lookups
cannot exhaust.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import redis
import redis.asyncio as aredis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from ..config import CacheConfig, redacted_url
from ..errors import ConfigurationError
from ._async.store import AsyncStore
from ._sync.store import SyncStore
from .layout import Layout


def client_kwargs(config: CacheConfig) -> dict[str, Any]:
    # redis-py retries up to 10 times by default: each retry would add a full timeout to
    # the user's LLM call. A cache fails open instead.
    return {
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.connect_timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
        "decode_responses": False,
    }


def make_client(config: CacheConfig) -> redis.Redis:
    """A redis-py client: no retries, short timeouts, a bounded pool that queues."""
    from redis.retry import Retry

    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            timeout=config.pool_timeout,
            retry=Retry(NoBackoff(), 0),
            **client_kwargs(config),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"redis_url {redacted_url(config.redis_url)!r} is not a Redis URL ({exc}); use e.g. "
            "redis://localhost:6379/0, rediss://user:password@host:6380/0 or unix:///path.sock"
        ) from exc
    return redis.Redis.from_pool(pool)  # the client owns the pool and closes it


def make_async_client(config: CacheConfig) -> aredis.Redis:
    """The redis.asyncio twin of `make_client` (one per event loop)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    pool = aredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout,
        retry=AsyncRetry(NoBackoff(), 0),
        **client_kwargs(config),
    )
    return aredis.Redis.from_pool(pool)  # the client owns the pool and closes it


# Administration retries back off 50 ms, 100 ms, 200 ms... (with jitter), at most 1 s.
ADMIN_BACKOFF_BASE = 0.05
ADMIN_BACKOFF_CAP = 1.0


def admin_client_kwargs(config: CacheConfig) -> dict[str, Any]:
    """The administration calls' settings: ``admin_timeout`` per command (and per
    connect), retried on timeouts and dropped connections."""
    return {
        **client_kwargs(config),
        "socket_timeout": config.admin_timeout,
        "socket_connect_timeout": max(config.connect_timeout, config.admin_timeout),
        "retry_on_timeout": True,
    }


def make_admin_client(config: CacheConfig) -> redis.Redis:
    """The client of the administration calls (invalidate, count, stats, export,
    policies...): patient, retried ``admin_retries`` times by redis-py's ``Retry``, and
    its own pool (connections opened on demand), so a burst of lookups that drains the
    request path's pool never makes them fail."""
    from redis.retry import Retry

    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            timeout=config.admin_timeout,
            retry=Retry(
                ExponentialWithJitterBackoff(ADMIN_BACKOFF_CAP, ADMIN_BACKOFF_BASE),
                config.admin_retries,
            ),
            **admin_client_kwargs(config),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"redis_url {redacted_url(config.redis_url)!r} is not a Redis URL ({exc})"
        ) from exc
    return redis.Redis.from_pool(pool)


def make_async_admin_client(config: CacheConfig) -> aredis.Redis:
    """The redis.asyncio twin of `make_admin_client` (one per event loop)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    pool = aredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.max_connections,
        timeout=config.admin_timeout,
        retry=AsyncRetry(
            ExponentialWithJitterBackoff(ADMIN_BACKOFF_CAP, ADMIN_BACKOFF_BASE),
            config.admin_retries,
        ),
        **admin_client_kwargs(config),
    )
    return aredis.Redis.from_pool(pool)


class SyncStores:
    """The sync driver's stores: one client, shared by every thread, and the
    administration calls' (``admin``; by default the same)."""

    def __init__(self, store: SyncStore, admin: SyncStore | None = None) -> None:
        self.store = store
        self.admin_store = admin if admin is not None else store

    def get(self) -> SyncStore:
        return self.store

    def admin(self) -> SyncStore:
        """The store of the administration calls: patient, retried, its own pool."""
        return self.admin_store

    def close(self) -> None:
        self.store.close()
        if self.admin_store is not self.store:
            self.admin_store.close()


class AsyncStores:
    """The async driver's stores: one ``redis.asyncio`` client per event loop (a client
    must not cross loops), made on first use in that loop and closed when the loop
    shuts down, or by `aclose`.

    Args:
        config: the engine's configuration (URL, timeouts, pool size).
        layout: the namespace's key names.
        client: a caller's client to use instead (only from one event loop); it is
            never closed here.
    """

    def __init__(
        self, config: CacheConfig, layout: Layout, client: aredis.Redis | None = None
    ) -> None:
        self.config = config
        self.layout = layout
        self.shared = client
        self._stores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncStore, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        self._admin_stores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncStore, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> AsyncStore:
        loop = asyncio.get_running_loop()
        entry = self._stores.get(loop)
        if entry is None:
            client = self.shared or make_async_client(self.config)
            store = AsyncStore(client, self.layout, self.config)
            closer = _close_at_loop_shutdown(store, own=self.shared is None)
            await closer.asend(None)
            entry = self._stores[loop] = (store, closer)
        return entry[0]

    async def admin(self) -> AsyncStore:
        """The running loop's store of the administration calls (`make_async_admin_client`;
        a caller's client when one was given)."""
        loop = asyncio.get_running_loop()
        entry = self._admin_stores.get(loop)
        if entry is None:
            client = self.shared or make_async_admin_client(self.config)
            store = AsyncStore(client, self.layout, self.config)
            closer = _close_at_loop_shutdown(store, own=self.shared is None)
            await closer.asend(None)
            entry = self._admin_stores[loop] = (store, closer)
        return entry[0]

    async def aclose(self) -> None:
        """Close the running loop's clients (if this object made them)."""
        loop = asyncio.get_running_loop()
        for stores in (self._stores, self._admin_stores):
            entry = stores.pop(loop, None)
            if entry is not None:
                await entry[1].aclose()


async def _close_at_loop_shutdown(store: AsyncStore, *, own: bool) -> AsyncGenerator[None, None]:
    """Parked at its first ``yield`` for the life of an event loop. The loop finalizes
    it in ``shutdown_asyncgens()``, so the pool is closed inside its own loop, before
    the loop closes, even when the user never calls `CacheEngine.aclose`."""
    try:
        yield
    finally:
        if own:
            await store.close()
