"""Stale-if-error lookups: entries past their TTL stay readable for ``stale_grace``."""

from __future__ import annotations

from collections.abc import Callable

import redis

from semcache_core import CacheEngine, Outcome
from tests.integration.drivers import Driver


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_stale_lookup_serves_expired_entries_within_grace(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    clock = Clock()
    engine = driver.make(make_engine, clock=clock, ttl=60, stale_grace=3600)
    req = engine.request("What is the refund window?")
    assert engine.store(req, b"30 days")
    key = engine.lookup(req).key
    assert key is not None
    # Redis keeps the entry for TTL + grace; the engine serves it for TTL only.
    assert 3600_000 < raw_redis.pttl(key) <= 3660_000
    clock.now += 120
    assert engine.lookup(req).outcome == Outcome.MISS
    stale = engine.lookup(req, stale=True)
    assert stale.hit and stale.stale and stale.value == b"30 days"
    clock.now += 3600
    assert not engine.lookup(req, stale=True).hit  # past the grace period too
    stats = engine.stats()["tenants"]["default"]
    assert stats["stale_served"] == 1
    assert stats["requests"] == 2  # stale lookups are not counted as more requests


def test_without_grace_nothing_stale_is_served(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    clock = Clock()
    engine = driver.make(make_engine, clock=clock, ttl=60)
    req = engine.request("q")
    engine.store(req, b"a")
    assert engine.lookup(req, stale=True).hit  # fresh entries are served stale too
    clock.now += 61
    assert not engine.lookup(req, stale=True).hit
