"""Invalidation by tenant, tag (any / all), scope, age and everything; batched UNLINK,
never KEYS or FLUSHDB (checked with Redis' own command statistics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from semcache_core import CacheEngine, cache_context
from semcache_core.errors import ConfigurationError
from tests.conftest import hashed_embedder
from tests.integration.drivers import DrivenEngine, Driver


def calls(raw: redis.Redis, command: str) -> int:
    stats = raw.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def guard(raw_redis: redis.Redis) -> Iterator[None]:
    before = {c: calls(raw_redis, c) for c in ("keys", "flushdb", "flushall")}
    yield
    after = {c: calls(raw_redis, c) for c in ("keys", "flushdb", "flushall")}
    assert after == before, "semcache must never run KEYS / FLUSHDB / FLUSHALL"


@pytest.fixture
def now() -> list[float]:
    return [1_700_000_000.0]


@pytest.fixture
def engine(
    make_engine: Callable[..., CacheEngine], now: list[float], driver: Driver
) -> DrivenEngine:
    # a small batch size makes every invalidation take several batches
    return driver.make(
        make_engine, embedder=hashed_embedder(), invalidate_batch=7, clock=lambda: now[0]
    )


def fill(engine: DrivenEngine, now: list[float]) -> None:
    for tenant in ("acme", "globex"):
        for i in range(20):
            tags = ["faq"] if i % 2 else ["faq", "billing"]
            if i % 5 == 0:
                tags = ["billing"]
            with cache_context(tenant=tenant, tags=tags):
                engine.store(engine.request(f"q{i}", scope={"model": f"m{i % 2}"}), b"x")
            now[0] += 10


def test_by_tenant(engine: DrivenEngine, now: list[float], guard: None) -> None:
    fill(engine, now)
    assert engine.invalidate(tenant="acme") == 20
    assert engine.count(tenant="acme") == 0 and engine.count(tenant="globex") == 20


def test_by_tag_any_and_all(engine: DrivenEngine, now: list[float], guard: None) -> None:
    fill(engine, now)
    # per tenant: i%5==0 -> {billing} (4); odd -> {faq} (8 of the rest); even -> both (8)
    assert engine.invalidate(tags=["faq", "billing"], match="all", tenant="acme") == 8
    assert engine.invalidate(tags=["billing"], tenant="acme") == 4
    assert engine.count(tenant="acme") == 8
    assert engine.invalidate(tags=["faq", "nope"], match="any") == 8 + 16
    assert engine.count() == 4  # globex's billing-only entries


TAGGED = {
    "both": ["faq", "billing"],
    "both and more": ["billing", "eu", "faq"],
    "faq only": ["faq"],
    "billing only": ["billing"],
    "faq and eu": ["faq", "eu"],
    "untagged": [],
}


def test_match_all_deletes_only_entries_carrying_every_tag(
    engine: DrivenEngine, guard: None
) -> None:
    for tenant in ("acme", "globex"):
        for prompt, tags in TAGGED.items():
            assert engine.store(engine.request(prompt, tenant=tenant, tags=tags), b"x")

    def cached(tenant: str) -> set[str]:
        return {p for p in TAGGED if engine.lookup(engine.request(p, tenant=tenant)).hit}

    # A tag no entry has: nothing carries all of them, though most carry some.
    assert engine.invalidate(tags=["faq", "billing", "nope"], match="all") == 0
    assert engine.count() == 12
    # Only acme's entries that carry both tags; those with one of them stay.
    assert engine.invalidate(tags=["billing", "faq"], match="all", tenant="acme") == 2
    assert cached("acme") == {"faq only", "billing only", "faq and eu", "untagged"}
    assert cached("globex") == set(TAGGED)
    # Across tenants.
    assert engine.invalidate(tags=["faq", "eu"], match="all") == 2 + 1
    assert cached("acme") == {"faq only", "billing only", "untagged"}
    assert cached("globex") == {"both", "faq only", "billing only", "untagged"}
    assert engine.count() == 7


def test_by_scope(engine: CacheEngine, now: list[float], guard: None) -> None:
    fill(engine, now)
    scope = engine.request("x", scope={"model": "m1"}).scope
    assert engine.invalidate(scope=scope) == 20
    assert engine.count() == 20


def test_by_age(engine: DrivenEngine, now: list[float], guard: None) -> None:
    fill(engine, now)  # 40 entries written 10 s apart; now is 10 s after the last
    assert engine.invalidate(older_than=105) == 30  # written more than 105 s ago
    assert engine.count() == 10


def test_everything_and_other_namespaces_untouched(
    engine: DrivenEngine,
    now: list[float],
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
    namespace: str,
    guard: None,
) -> None:
    neighbour = driver.make(make_engine, embedder=hashed_embedder(), namespace=namespace + "x")
    neighbour.store(neighbour.request("keep me"), b"x")
    fill(engine, now)
    assert engine.invalidate(everything=True) == 40
    assert engine.count() == 0
    assert neighbour.count() == 1 and neighbour.lookup(neighbour.request("keep me")).hit


def test_by_tenant_and_tag_then_everything(
    engine: DrivenEngine, now: list[float], guard: None
) -> None:
    fill(engine, now)
    assert engine.invalidate(tenant="globex", tags=["billing"]) == 12
    assert engine.invalidate(everything=True) == 28


def test_invalidate_needs_a_criterion(engine: DrivenEngine) -> None:
    with pytest.raises(ConfigurationError, match="everything=True"):
        engine.invalidate()
    with pytest.raises(ConfigurationError):
        engine.invalidate(tags=["a"], match="some")
