"""TTL semantics against real Redis expiry (short TTLs, no long sleeps).

* absolute by default: a hit does not extend the entry's life;
* sliding when configured: each hit restarts it;
* per-entry override (request / `cache_context`);
* ``ttl=None`` never expires; ``ttl=0`` means "do not cache".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from semcache_core import CacheEngine, Outcome, cache_context
from tests.conftest import hashed_embedder
from tests.integration.drivers import DrivenEngine, Driver


def key_of(engine: DrivenEngine, prompt: str, **kw: object) -> str:
    req = engine.request(prompt, **kw)  # type: ignore[arg-type]
    return engine.layout.entry_key(req.tenant_token, req.exact_key)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_absolute_ttl_is_not_extended_by_hits(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder(), ttl=1.5)
    req = engine.request("q")
    assert engine.store(req, b"a")
    key = key_of(engine, "q")
    time.sleep(0.5)
    before = raw_redis.pttl(key)
    assert engine.lookup(req).outcome is Outcome.EXACT_HIT
    after = raw_redis.pttl(key)
    assert 0 < after <= before <= 1100  # the hit did not reset it to 1500
    assert wait_until(lambda: engine.lookup(req).outcome is Outcome.MISS)
    assert raw_redis.exists(key) == 0


def test_sliding_ttl_restarts_on_hit(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder(), ttl=1.5, sliding_ttl=True)
    req = engine.request("q")
    engine.store(req, b"a")
    key = key_of(engine, "q")
    time.sleep(0.6)
    assert raw_redis.pttl(key) <= 950
    assert engine.lookup(req).hit
    assert raw_redis.pttl(key) > 1300  # restarted
    # semantic hits slide too
    paraphrase = engine.request("q2", question="q")
    time.sleep(0.6)
    assert engine.lookup(paraphrase).outcome is Outcome.SEMANTIC_HIT
    assert raw_redis.pttl(key) > 1300


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
