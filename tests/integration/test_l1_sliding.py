"""The L1 tier with sliding TTLs (hardening issue 15, item 13).

Reported: with ``ttl=1, sliding_ttl=True, l1_maxsize=100``, 2 of 20 lookups missed (and
called the LLM) although the entry was alive in Redis. The L1 copy kept the
``expires_at`` it was read with, and a copy found expired was a miss instead of a reason
to ask Redis. Now a hit that slides the TTL slides the copy too, and an expired copy falls
through to Redis.

No sleeping: the engine's clock is injected, TTLs are long in real time (Redis and the
tier's own timer never expire anything while a test runs), and only the engine's clock
moves past the entry's ``expires_at``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from semcache_core import CacheEngine, CacheRequest, Outcome
from tests.integration.drivers import DrivenEngine, Driver

TTL = 1000.0


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


def _engine(
    make_engine: Callable[..., CacheEngine], driver: Driver, clock: list[float], l1: bool
) -> DrivenEngine:
    engine = driver.make(
        make_engine,
        dims=8,
        ttl=TTL,
        sliding_ttl=True,
        l1_maxsize=100 if l1 else 0,
        l1_ttl=600.0,
        clock=lambda: clock[0],
    )
    state = engine.engine._state
    if l1:
        assert state.l1_tier() is not None and state.l1_sub is not None
        assert state.l1_sub.wait_connected(5.0)  # the tier serves once subscribed
    return engine


def _store(engine: DrivenEngine, req: CacheRequest, payload: bytes) -> None:
    """Store, and wait until this process's subscriber has applied the write's own L1
    announcement (applied later, it would drop the copy a lookup just took)."""
    tier = engine.engine._state.l1
    assert tier is not None
    before = tier.version
    assert engine.store(req, payload)
    # Two drops: the store's own, in this process, and the announcement, heard back.
    deadline = time.monotonic() + 10.0  # generous: a bound on a hang, not a timing claim
    while tier.version < before + 2:
        assert time.monotonic() < deadline, "the store's own L1 announcement never came"
        time.sleep(0.001)


def _hmgets(raw: redis.Redis) -> int:
    """HMGETs Redis has answered: the exact layer's reads that did not come from L1."""
    stats = raw.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def test_a_hit_that_slides_the_ttl_slides_the_l1_copy(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    driver: Driver,
    clock: list[float],
) -> None:
    engine = _engine(make_engine, driver, clock, l1=True)
    req = engine.request("What is the refund window?", tenant="acme")
    key = engine.key(req)
    _store(engine, req, b"30 days")
    assert engine.lookup(req).value == b"30 days"  # read from Redis, now held in L1
    clock[0] += 600
    assert engine.lookup(req).outcome is Outcome.EXACT_HIT  # from L1; slides the TTL
    tier = engine.engine._state.l1
    assert tier is not None
    held = tier.get(key)
    assert held is not None and float(held["expires_at"]) == clock[0] + TTL  # was: +1000

    clock[0] += 600  # past the expiry it was first read with, well within the slid one
    reads = _hmgets(raw_redis)
    found = engine.lookup(req)
    assert found.outcome is Outcome.EXACT_HIT and found.value == b"30 days"  # was MISS
    assert _hmgets(raw_redis) == reads  # served from the slid L1 copy, no Redis read


def test_an_expired_l1_copy_falls_through_to_redis(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    driver: Driver,
    clock: list[float],
) -> None:
    # Two processes of one namespace: A holds the entry in L1, B (no L1) keeps hitting
    # it. B's hits slide the TTL in Redis; A's copy still carries the old expiry.
    a = _engine(make_engine, driver, clock, l1=True)
    b = _engine(make_engine, driver, clock, l1=False)
    req = a.request("What is the refund window?", tenant="acme")
    _store(a, req, b"30 days")
    assert a.lookup(req).value == b"30 days"  # A holds it, expiring at +1000
    clock[0] += 600
    assert b.lookup(req).outcome is Outcome.EXACT_HIT  # slid in Redis to +1600

    clock[0] += 600  # A's copy says expired; Redis says alive
    reads = _hmgets(raw_redis)
    found = a.lookup(req)
    assert found.outcome is Outcome.EXACT_HIT and found.value == b"30 days"  # was MISS
    assert _hmgets(raw_redis) == reads + 1  # asked Redis once
    held = a.engine._state.l1
    assert held is not None and held.get(a.key(req)) is not None  # held again, fresh
    assert a.lookup(req).outcome is Outcome.EXACT_HIT
    assert _hmgets(raw_redis) == reads + 1  # and served from it again
