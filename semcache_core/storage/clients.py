"""Redis clients under semcache's fail-fast policy: no retries, short timeouts, a
bounded pool that queues.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster

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


Client = redis.Redis | RedisCluster
AsyncClient = aredis.Redis | AsyncRedisCluster


def _bad_url(config: CacheConfig, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"redis_url {redacted_url(config.redis_url)!r} is not a Redis URL ({exc}); use e.g. "
        "redis://localhost:6379/0, rediss://user:password@host:6380/0 or unix:///path.sock "
        "(for a cluster, the URL of any one node)"
    )


def is_cluster_client(client: object) -> bool:
    return isinstance(client, (RedisCluster, AsyncRedisCluster))


def detect_cluster(config: CacheConfig) -> tuple[bool, Exception | None]:
    """Whether ``redis_url`` is a Redis Cluster node: the ``cluster`` setting if set,
    else ``INFO cluster``'s ``cluster_enabled``, asked once (one connection attempt,
    no retry).

    Returns ``(cluster, fault)``: an unreachable Redis counts as one node and its error
    comes back for the engine to raise (``require_redis``) or log; ``cluster=True``
    (``SEMCACHE_CLUSTER=true``) makes the choice without asking.
    """
    if config.cluster is not None:
        return config.cluster, None
    from redis.retry import Retry

    try:
        probe = redis.Redis.from_url(
            config.redis_url, retry=Retry(NoBackoff(), 0), **client_kwargs(config)
        )
    except ValueError as exc:
        raise _bad_url(config, exc) from exc
    try:
        return bool(int(probe.info("cluster").get("cluster_enabled", 0))), None
    except redis.RedisError as exc:
        return False, exc
    finally:
        probe.close()


async def adetect_cluster(config: CacheConfig) -> tuple[bool, Exception | None]:
    """`detect_cluster` on ``redis.asyncio``, for `CacheEngine.acreate`."""
    if config.cluster is not None:
        return config.cluster, None
    from redis.asyncio.retry import Retry as AsyncRetry

    try:
        probe = aredis.Redis.from_url(
            config.redis_url, retry=AsyncRetry(NoBackoff(), 0), **client_kwargs(config)
        )
    except ValueError as exc:
        raise _bad_url(config, exc) from exc
    try:
        info = await probe.info("cluster")
        return bool(int(info.get("cluster_enabled", 0))), None
    except redis.RedisError as exc:
        return False, exc
    finally:
        await probe.aclose()


def make_client(config: CacheConfig, cluster: bool = False) -> Client:
    """A redis-py client: no retries, short timeouts, a bounded pool (per node)."""
    from redis.retry import Retry

    if cluster:
        try:
            return RedisCluster.from_url(
                config.redis_url,
                max_connections=config.max_connections,
                retry=Retry(NoBackoff(), 0),
                **client_kwargs(config),
            )
        except ValueError as exc:
            raise _bad_url(config, exc) from exc
    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            timeout=config.pool_timeout,
            retry=Retry(NoBackoff(), 0),
            **client_kwargs(config),
        )
    except ValueError as exc:
        raise _bad_url(config, exc) from exc
    return redis.Redis.from_pool(pool)  # the client owns the pool and closes it


def make_async_client(config: CacheConfig, cluster: bool = False) -> AsyncClient:
    """The redis.asyncio twin of `make_client` (one per event loop)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    if cluster:
        # redis.asyncio's cluster takes no retry_on_timeout: retry=0 already says it.
        kwargs = {k: v for k, v in client_kwargs(config).items() if k != "retry_on_timeout"}
        return AsyncRedisCluster.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            retry=AsyncRetry(NoBackoff(), 0),
            **kwargs,
        )
    pool = aredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout,
        retry=AsyncRetry(NoBackoff(), 0),
        **client_kwargs(config),
    )
    return aredis.Redis.from_pool(pool)  # the client owns the pool and closes it


class SyncStores:
    """The sync driver's store: one client, shared by every thread."""

    def __init__(self, store: SyncStore) -> None:
        self.store = store

    def get(self) -> SyncStore:
        return self.store

    def close(self) -> None:
        self.store.close()


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
        self,
        config: CacheConfig,
        layout: Layout,
        client: AsyncClient | None = None,
        *,
        cluster: bool = False,
    ) -> None:
        self.config = config
        self.layout = layout
        self.shared = client
        self.cluster = cluster
        self._stores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncStore, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> AsyncStore:
        loop = asyncio.get_running_loop()
        entry = self._stores.get(loop)
        if entry is None:
            client = self.shared or make_async_client(self.config, self.cluster)
            if isinstance(client, AsyncRedisCluster):
                # Learn the slot map now: redis.asyncio's cluster pipelines do not.
                await client.initialize()
            store = AsyncStore(client, self.layout, self.config)
            closer = _close_at_loop_shutdown(store, own=self.shared is None)
            await closer.asend(None)
            entry = self._stores[loop] = (store, closer)
        return entry[0]

    async def aclose(self) -> None:
        """Close the running loop's client (if this object made it)."""
        entry = self._stores.pop(asyncio.get_running_loop(), None)
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
