"""Redis clients under semcache's fail-fast policy: no retries, short timeouts, a
bounded pool that queues. Administration calls get clients of their own
(`make_admin_client`): patient timeouts, bounded retries, and a pool a burst of lookups
cannot exhaust.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import Connection as AsyncConnection
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import RedisCluster

from ..config import CacheConfig, redacted_url
from ..deadline import release
from ..errors import ConfigurationError
from ._async.store import AsyncStore
from ._sync.store import SyncStore
from .deadline import abudgeted, budgeted
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
    except redis.ResponseError:
        return False, None  # INFO not allowed (a minimal ACL user): one node, or cluster=True
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
    except redis.ResponseError:
        return False, None  # INFO not allowed (a minimal ACL user): one node, or cluster=True
    except redis.RedisError as exc:
        return False, exc
    finally:
        await probe.aclose()


def make_client(config: CacheConfig, cluster: bool = False) -> Client:
    """A redis-py client: no retries, short timeouts, a bounded pool (per node)."""
    from redis.retry import Retry

    if cluster:
        try:
            client = RedisCluster.from_url(
                config.redis_url,
                max_connections=config.max_connections,
                retry=Retry(NoBackoff(), 0),
                **client_kwargs(config),
            )
        except ValueError as exc:
            raise _bad_url(config, exc) from exc
        # The pools of the nodes it learns are made from these kwargs (TLS included: the
        # URL chose the class); those of the nodes it knows already are changed here.
        kwargs = client.nodes_manager.connection_kwargs
        kwargs["connection_class"] = budgeted(kwargs.get("connection_class", redis.Connection))
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            _budget_pool(node.redis_connection)
        return client
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
    pool.connection_class = budgeted(pool.connection_class)
    return redis.Redis.from_pool(pool)  # the client owns the pool and closes it


def _budget_pool(client: Any) -> None:
    """A node's pool made before the cluster client was changed: its class reads the
    budget from now on, and the idle connections it made already (the one that learned
    the slot map) are closed, so that the next ones are made with it."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or pool.connection_class is budgeted(pool.connection_class):
        return
    pool.connection_class = budgeted(pool.connection_class)
    pool.disconnect()
    pool.reset()


def make_async_client(config: CacheConfig, cluster: bool = False) -> AsyncClient:
    """The redis.asyncio twin of `make_client` (one per event loop)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    if cluster:
        # redis.asyncio's cluster takes no retry_on_timeout: retry=0 already says it.
        kwargs = {k: v for k, v in client_kwargs(config).items() if k != "retry_on_timeout"}
        client = QueueingAsyncRedisCluster.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            retry=AsyncRetry(NoBackoff(), 0),
            queue_timeout=config.pool_timeout,
            **kwargs,
        )
        # The nodes it knows now, and those it learns (made from these kwargs).
        for made in (client.connection_kwargs, client.nodes_manager.connection_kwargs):
            made["connection_class"] = abudgeted(made.get("connection_class", AsyncConnection))
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = abudgeted(node.connection_class)
        return client
    pool = aredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout,
        retry=AsyncRetry(NoBackoff(), 0),
        **client_kwargs(config),
    )
    pool.connection_class = abudgeted(pool.connection_class)
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


def _admin_retry(retry_class: Any, config: CacheConfig) -> Any:
    return retry_class(
        ExponentialWithJitterBackoff(ADMIN_BACKOFF_CAP, ADMIN_BACKOFF_BASE), config.admin_retries
    )


def make_admin_client(config: CacheConfig, cluster: bool = False) -> Client:
    """The client of the administration calls (invalidate, count, stats, export,
    policies...): patient, retried ``admin_retries`` times by redis-py's ``Retry``, and
    its own pool (connections opened on demand), so a burst of lookups that drains the
    request path's pool never makes them fail."""
    from redis.retry import Retry

    if cluster:
        try:
            return RedisCluster.from_url(
                config.redis_url,
                max_connections=config.max_connections,
                retry=_admin_retry(Retry, config),
                **admin_client_kwargs(config),
            )
        except ValueError as exc:
            raise _bad_url(config, exc) from exc
    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            timeout=config.admin_timeout,
            retry=_admin_retry(Retry, config),
            **admin_client_kwargs(config),
        )
    except ValueError as exc:
        raise _bad_url(config, exc) from exc
    return redis.Redis.from_pool(pool)


def make_async_admin_client(config: CacheConfig, cluster: bool = False) -> AsyncClient:
    """The redis.asyncio twin of `make_admin_client` (one per event loop)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    if cluster:
        kwargs = {k: v for k, v in admin_client_kwargs(config).items() if k != "retry_on_timeout"}
        return QueueingAsyncRedisCluster.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            retry=_admin_retry(AsyncRetry, config),
            queue_timeout=config.admin_timeout,
            **kwargs,
        )
    pool = aredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.max_connections,
        timeout=config.admin_timeout,
        retry=_admin_retry(AsyncRetry, config),
        **admin_client_kwargs(config),
    )
    return aredis.Redis.from_pool(pool)


class QueueingAsyncRedisCluster(AsyncRedisCluster):
    """redis.asyncio's cluster client, with a pool that queues: the stock client raises
    ``MaxConnectionsError`` at once when a node's ``max_connections`` are all in use,
    where the one-node client's ``BlockingConnectionPool`` waits ``pool_timeout``. Here
    at most ``max_connections`` commands (or pipelines) are in flight per client, the
    rest wait their turn up to ``queue_timeout``, then fail as a drained pool does."""

    def __init__(self, *args: Any, queue_timeout: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(int(kwargs.get("max_connections") or 2**31))
        self._queue_timeout = queue_timeout

    async def _turn(self) -> None:
        try:
            await asyncio.wait_for(self._turns.acquire(), self._queue_timeout)
        except TimeoutError:
            raise redis.ConnectionError("No connection available.") from None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self._turn()
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._turns.release()

    async def aclose(self) -> None:
        """Close every node's connections. redis.asyncio's own ``aclose`` does nothing
        while the client is due to learn the slot map again (after a command timed out
        or lost its connection, until the next command): closed then, it left every
        node's connections open, each an unclosed transport at garbage collection."""
        await super().aclose()
        await self.nodes_manager.aclose()
        await self.nodes_manager.aclose("startup_nodes")

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def queued_execute(*args: Any, **kwargs: Any) -> Any:
            await self._turn()
            try:
                return await execute(*args, **kwargs)
            finally:
                self._turns.release()

        pipe.execute = queued_execute  # type: ignore[method-assign]
        return pipe


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


_Entry = tuple[AsyncStore, AsyncGenerator[None, None]]


def _forget_opening(
    opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[_Entry]],
    loop: asyncio.AbstractEventLoop,
) -> Callable[[asyncio.Task[_Entry]], None]:
    """Done-callback of an opening: the next first call opens anew (after a failure), and
    a failure whose callers were all cancelled is still retrieved (no "never retrieved")."""

    def forget(task: asyncio.Task[_Entry]) -> None:
        if opening.get(loop) is task:
            del opening[loop]
        if not task.cancelled():
            task.exception()

    return forget


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
        self._stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry] = (
            weakref.WeakKeyDictionary()
        )
        self._admin_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry] = (
            weakref.WeakKeyDictionary()
        )
        self._opening: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Task[_Entry]
        ] = weakref.WeakKeyDictionary()
        self._admin_opening: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Task[_Entry]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> AsyncStore:
        loop = asyncio.get_running_loop()
        entry = self._stores.get(loop)
        if entry is None:
            entry = await self._first(self._stores, self._opening, loop, admin=False)
        return entry[0]

    async def admin(self) -> AsyncStore:
        """The running loop's store of the administration calls (`make_async_admin_client`;
        a caller's client when one was given)."""
        loop = asyncio.get_running_loop()
        entry = self._admin_stores.get(loop)
        if entry is None:
            entry = await self._first(self._admin_stores, self._admin_opening, loop, admin=True)
        return entry[0]

    async def _first(
        self,
        stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry],
        opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[_Entry]],
        loop: asyncio.AbstractEventLoop,
        *,
        admin: bool,
    ) -> _Entry:
        """The loop's store, opened once however many first calls arrive together: they
        all await the one opening (a cluster client learns the slot map there), so no
        second client is made and then closed under load. If the opening fails (Redis
        is down), every call that awaited it fails with it (each fails open) and the
        next call tries again. A caller that is cancelled does not cancel the opening."""
        task = opening.get(loop)
        if task is None:
            task = loop.create_task(self._open(stores, loop, admin=admin))
            opening[loop] = task
            task.add_done_callback(_forget_opening(opening, loop))
        return await asyncio.shield(task)

    async def _open(
        self,
        stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry],
        loop: asyncio.AbstractEventLoop,
        *,
        admin: bool,
    ) -> _Entry:
        release()  # opening (the slot map, the first connect) is set-up: not a call's wait
        if self.shared is not None:
            client: AsyncClient = self.shared
        elif admin:
            client = make_async_admin_client(self.config, self.cluster)
        else:
            client = make_async_client(self.config, self.cluster)
        if isinstance(client, AsyncRedisCluster):
            try:
                # Learn the slot map now: redis.asyncio's cluster pipelines do not.
                await client.initialize()
            except BaseException:
                if client is not self.shared:
                    with contextlib.suppress(Exception):
                        await client.aclose()
                raise
        store = AsyncStore(client, self.layout, self.config)
        closer = _close_at_loop_shutdown(store, own=self.shared is None)
        await closer.asend(None)
        entry = stores[loop] = (store, closer)
        return entry

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
