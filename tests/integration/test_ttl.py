"""TTL semantics, without sleeping: the engine's clock is injected, and Redis' side of
time passing is a PEXPIRE of the key to what would be left of its TTL.

* absolute by default: a hit does not extend the entry's life;
* sliding when configured: each hit restarts it;
* per-entry override (request / `cache_context`);
* ``ttl=None`` never expires; ``ttl=0`` means "do not cache".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from semcache_core import CacheEngine, CacheRequest, LookupResult, Outcome, cache_context
from tests.conftest import hashed_embedder
from tests.integration.drivers import DrivenEngine, Driver


def key_of(engine: DrivenEngine, prompt: str, **kw: object) -> str:
    req = engine.request(prompt, **kw)  # type: ignore[arg-type]
    return engine.key(req)


TTL = 1000.0  # seconds: nothing expires on its own while a test runs


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


def ttl_engine(
    make_engine: Callable[..., CacheEngine], clock: list[float], **settings: Any
) -> CacheEngine:
    return make_engine(embedder=hashed_embedder(), ttl=TTL, clock=lambda: clock[0], **settings)


def age(raw_redis: redis.Redis, key: str, clock: list[float], seconds: float) -> None:
    """Let ``seconds`` pass for an entry written ``seconds`` ago: the engine's clock moves
    on, and Redis' countdown of the key is set to what would be left of its TTL."""
    clock[0] += seconds
    assert raw_redis.pexpire(key, int((TTL - seconds) * 1000))


async def lookup(engine: CacheEngine, request: CacheRequest, driver: str) -> LookupResult:
    return engine.lookup(request) if driver == "sync" else await engine.alookup(request)


async def store(engine: CacheEngine, request: CacheRequest, driver: str) -> None:
    ok = engine.store(request, b"a") if driver == "sync" else await engine.astore(request, b"a")
    assert ok


DRIVERS = pytest.mark.parametrize("driver", ["sync", "async"])


@DRIVERS
async def test_absolute_ttl_is_not_extended_by_hits(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    clock: list[float],
    driver: str,
) -> None:
    engine = ttl_engine(make_engine, clock)
    req = engine.request("q")
    await store(engine, req, driver)
    key = key_of(engine, "q")
    age(raw_redis, key, clock, 600)
    assert (await lookup(engine, req, driver)).outcome is Outcome.EXACT_HIT
    assert 0 < raw_redis.pttl(key) <= 400_000  # Redis' countdown was not restarted
    clock[0] += 401  # past the TTL counted from the write
    assert (await lookup(engine, req, driver)).outcome is Outcome.MISS
    await engine.aclose()


@DRIVERS
async def test_sliding_ttl_restarts_on_exact_hit(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    clock: list[float],
    driver: str,
) -> None:
    engine = ttl_engine(make_engine, clock, sliding_ttl=True)
    req = engine.request("q")
    await store(engine, req, driver)
    key = key_of(engine, "q")
    age(raw_redis, key, clock, 600)
    assert raw_redis.pttl(key) <= 400_000
    assert (await lookup(engine, req, driver)).outcome is Outcome.EXACT_HIT
    assert raw_redis.pttl(key) > 900_000  # Redis' countdown restarted at the full TTL
    # ... and so did the entry's own expiry: 1,200 s after the write, 600 s after the hit.
    clock[0] += 600
    assert (await lookup(engine, req, driver)).outcome is Outcome.EXACT_HIT
    clock[0] += TTL  # a full TTL after the last hit: expired
    assert (await lookup(engine, req, driver)).outcome is Outcome.MISS
    await engine.aclose()


@DRIVERS
async def test_sliding_ttl_restarts_on_semantic_hit(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    clock: list[float],
    driver: str,
) -> None:
    engine = ttl_engine(make_engine, clock, sliding_ttl=True)
    await store(engine, engine.request("q"), driver)
    key = key_of(engine, "q")
    paraphrase = engine.request("q2", question="q")
    age(raw_redis, key, clock, 600)
    hit = await lookup(engine, paraphrase, driver)
    assert hit.outcome is Outcome.SEMANTIC_HIT and hit.key == key
    assert raw_redis.pttl(key) > 900_000
    clock[0] += 600  # past the TTL counted from the write, not from the hit
    assert (await lookup(engine, paraphrase, driver)).outcome is Outcome.SEMANTIC_HIT
    await engine.aclose()


def test_per_entry_override_none_and_zero(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder(), ttl=100.0)
    engine.store(engine.request("default"), b"x")
    engine.store(engine.request("five", ttl=5), b"x")
    engine.store(engine.request("forever", ttl=None), b"x")
    with cache_context(ttl=7):
        engine.store(engine.request("context"), b"x")
    assert 99_000 < raw_redis.pttl(key_of(engine, "default")) <= 100_000
    assert 4_000 < raw_redis.pttl(key_of(engine, "five")) <= 5_000
    assert raw_redis.pttl(key_of(engine, "forever")) == -1
    assert 6_000 < raw_redis.pttl(key_of(engine, "context")) <= 7_000
    # ttl=0: do not cache
    assert engine.store(engine.request("zero", ttl=0), b"x") is False
    assert raw_redis.exists(key_of(engine, "zero")) == 0
    assert engine.stats()["tenants"]["default"]["stores_skipped"] == 1


def test_config_ttl_zero_disables_writes(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder(), ttl=0)
    req = engine.request("q")
    assert engine.store(req, b"x") is False
    assert engine.lookup(req).outcome is Outcome.MISS
    assert engine.count() == 0


def test_default_is_no_expiry(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder())
    engine.store(engine.request("q"), b"x")
    assert raw_redis.pttl(key_of(engine, "q")) == -1


def test_expired_entry_never_served_even_before_redis_evicts_it(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    """Redis expires keys lazily; expiry is also checked on read, with the engine's
    clock (injected here, so no sleeping)."""
    now = [1_000_000.0]
    engine = driver.make(make_engine, embedder=hashed_embedder(), ttl=3600.0, clock=lambda: now[0])
    engine.store(engine.request("q"), b"x")
    assert engine.lookup(engine.request("q")).hit
    now[0] += 3601
    assert engine.lookup(engine.request("q")).outcome is Outcome.MISS
    assert engine.lookup(engine.request("other", question="q")).outcome is Outcome.MISS
