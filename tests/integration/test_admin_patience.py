"""Administration calls are patient; the request path stays fail-fast.

Redis is made slow but alive with ``CLIENT PAUSE`` (every client's commands wait until
the pause ends; the server keeps accepting connections), the way an AOF rewrite or a
loaded host makes it. A lookup in that window fails open after one ``socket_timeout``
(0.1 s); ``invalidate``, ``count``, ``stats`` and ``export`` wait it out under
``admin_timeout`` and, past that, retry (``admin_retries``, redis-py's own ``Retry``).
An async burst that exhausts the request path's pool makes some lookups misses and never
an administration call raise: those have a pool of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from semcache_core import CacheConfig, CacheEngine, LookupResult, Outcome
from semcache_core.errors import BackendTimeoutError
from semcache_core.resilience import BreakerState
from semcache_core.transfer import export_entries
from tests.conftest import hashed_embedder
from tests.integration.drivers import Driver

PAUSE_MS = 800  # far longer than socket_timeout (0.1 s), far shorter than admin_timeout
SHIPPED_SOCKET_TIMEOUT = CacheConfig.model_fields["socket_timeout"].default


@pytest.fixture
def make_engine(make_engine: Callable[..., CacheEngine]) -> Callable[..., CacheEngine]:
    """The shared fixture's engines with the shipped ``socket_timeout`` (0.1 s), not its
    patient one: these tests are about that budget."""

    def _make(**kwargs: object) -> CacheEngine:
        kwargs.setdefault("socket_timeout", SHIPPED_SOCKET_TIMEOUT)
        return make_engine(**kwargs)

    assert SHIPPED_SOCKET_TIMEOUT == 0.1
    return _make


@contextlib.contextmanager
def paused(raw: redis.Redis, ms: int = PAUSE_MS) -> Iterator[None]:
    """Every client's commands wait for ``ms`` (or until the block ends)."""
    raw.execute_command("CLIENT", "PAUSE", ms, "ALL")
    try:
        yield
    finally:
        raw.execute_command("CLIENT", "UNPAUSE")


def test_admin_calls_wait_out_a_slow_redis_while_lookups_fail_fast(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder(), dims=16)
    for i in range(3):
        engine.store(engine.request(f"question {i}", tenant="acme"), b"answer")
    engine.store(engine.request("question 0", tenant="other"), b"answer")
    asked = engine.request("question 1", tenant="acme")

    with paused(raw_redis):
        started = time.perf_counter()
        looked = engine.lookup(asked)
        lookup_seconds = time.perf_counter() - started
        # Before the fix: BackendTimeoutError after 0.1 s, and the entries stayed.
        started = time.perf_counter()
        removed = engine.invalidate(tenant="acme")
        invalidate_seconds = time.perf_counter() - started
    print(
        f"\npaused {PAUSE_MS} ms: lookup failed open in {lookup_seconds * 1000:.0f} ms, "
        f"invalidate waited {invalidate_seconds * 1000:.0f} ms"
    )
    assert looked.outcome is Outcome.ERROR and not looked.hit  # a miss, not a raise
    assert lookup_seconds < 0.6 * PAUSE_MS / 1000  # one socket timeout, not the pause
    assert removed == 3
    assert raw_redis.exists(engine.key(asked)) == 0

    with paused(raw_redis):
        assert engine.count() == 1
    with paused(raw_redis):
        snap = engine.stats()
    assert snap["totals"] is not None, snap.get("totals_error")
    assert snap["totals"]["other"]["entries"] == 1
    assert engine.breaker.state is BreakerState.CLOSED  # one failed lookup, not three


def test_export_waits_out_a_slow_redis(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis
) -> None:
    engine = make_engine(embedder=hashed_embedder(), dims=16)
    for i in range(5):
        engine.store(engine.request(f"exported {i}"), b"answer")
    out = io.StringIO()
    with paused(raw_redis):
        assert export_entries(engine, out) == 5
    assert len([json.loads(line) for line in out.getvalue().splitlines()]) == 5


@pytest.mark.parametrize("retries", [0, 5])
def test_admin_calls_retry_past_their_timeout(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    driver: Driver,
    retries: int,
) -> None:
    """With ``admin_timeout`` shorter than the pause, the retries are what carry the call
    through: redis-py reconnects and sends it again once the pause is over."""
    engine = driver.make(
        make_engine, embedder=hashed_embedder(), dims=16, admin_timeout=0.25, admin_retries=retries
    )
    engine.store(engine.request("question", tenant="acme"), b"answer")
    with paused(raw_redis, 700):
        if retries == 0:
            with pytest.raises(BackendTimeoutError):
                engine.count(tenant="acme")
        else:
            assert engine.count(tenant="acme") == 1


async def test_an_async_burst_makes_misses_and_never_an_admin_error(
    make_engine: Callable[..., CacheEngine],
) -> None:
    """500 concurrent lookups while every connection of the request path's pool (4, a
    50 ms wait) is taken: each lookup is a miss (fail open, no exception), the pool
    waits do not open the breaker (Redis is healthy: nothing to stop calling), and an
    ``ainvalidate`` in the middle of the burst succeeds (before: "No connection
    available", and the breaker opened)."""
    engine = make_engine(
        embedder=hashed_embedder(), dims=16, validate=False, max_connections=4, pool_timeout=0.05
    )
    await engine.asetup()
    stored = [engine.request(f"burst question {i}", tenant="acme") for i in range(20)]
    for request in stored:
        await engine.astore(request, b"answer")
    pool = (await engine._astore()).client.connection_pool
    held = [await pool.get_connection() for _ in range(4)]  # the burst's competition

    async def invalidate_midway() -> int:
        await asyncio.sleep(0.01)  # the lookups are all waiting for a connection now
        return await engine.ainvalidate(tenant="nobody")

    try:
        results, removed = await asyncio.gather(
            asyncio.gather(*(engine.alookup(stored[i % 20]) for i in range(500))),
            invalidate_midway(),
        )
    finally:
        for connection in held:
            await pool.release(connection)
    outcomes = {r.outcome for r in results}
    assert removed == 0
    assert outcomes == {Outcome.ERROR}
    assert all(isinstance(r, LookupResult) and r.value is None for r in results)
    assert engine.breaker.opened_count == 0
    assert (await engine.alookup(stored[0])).hit  # caching goes on at once
    await engine.aclose()


async def test_500_concurrent_lookups_and_an_invalidation_on_the_default_pool(
    make_engine: Callable[..., CacheEngine],
) -> None:
    """The burst as it comes: default pool, 500 lookups at once, an ``ainvalidate`` while
    they run. Whatever the machine's load makes of the queue, nothing raises."""
    engine = make_engine(embedder=hashed_embedder(), dims=16, validate=False)
    await engine.asetup()
    stored = [engine.request(f"burst question {i}", tenant="acme") for i in range(50)]
    for request in stored:
        await engine.astore(request, b"answer")

    async def invalidate_midway() -> int:
        await asyncio.sleep(0.02)
        return await engine.ainvalidate(tenant="nobody")

    started = time.perf_counter()
    results, removed = await asyncio.gather(
        asyncio.gather(*(engine.alookup(stored[i % 50]) for i in range(500))),
        invalidate_midway(),
    )
    seconds = time.perf_counter() - started
    errors = sum(r.outcome is Outcome.ERROR for r in results)
    hits = sum(r.hit for r in results)
    print(f"\n500 lookups, default pool: {hits} hits, {errors} failed open, {seconds:.2f} s")
    assert removed == 0
    assert all(r.value is None for r in results if not r.hit)
    await engine.aclose()
