"""Redis comes back empty (hardening issue 15, item 6).

FLUSHALL, a restart without persistence or a failover to an empty replica takes the
index and its meta key with the entries. The engine notices on its next store (the meta
key is gone), on a semantic lookup (the search finds no index) and on `count` /
`invalidate`, and makes both again: for exact-only engines too, whose lookups never touch
the index. Each test empties a private Redis of its own with FLUSHALL.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from semcache_core import CacheEngine, Outcome
from semcache_core.embedded import EmbeddedRedis, start_embedded_redis
from semcache_core.resilience import BreakerState
from semcache_core.transfer import export_entries, import_entries
from tests.conftest import hashed_embedder
from tests.integration.drivers import DrivenEngine, Driver


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_embedded_redis(Path(tmp_path_factory.mktemp("emptied")), reuse=False)
    yield server
    server.stop()


@pytest.fixture
def own(own_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_server.url, socket_timeout=5)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def engines(own_server: EmbeddedRedis, driver: Driver) -> Iterator[list[DrivenEngine]]:
    made: list[DrivenEngine] = []
    yield made
    for engine in made:
        engine.engine.close()


def _engine(
    server: EmbeddedRedis, driver: Driver, made: list[DrivenEngine], **kw: object
) -> DrivenEngine:
    engine = driver.make(CacheEngine, server.url, namespace=f"e{uuid.uuid4().hex[:8]}", **kw)
    made.append(engine)
    return engine


def _has_index(client: redis.Redis, engine: DrivenEngine) -> bool:
    names = client.execute_command("FT._LIST")
    return engine.layout.index_name.encode() in names and bool(
        client.exists(engine.layout.meta_key)
    )


def test_an_exact_only_engine_makes_its_index_again(
    own_server: EmbeddedRedis, own: redis.Redis, driver: Driver, engines: list[DrivenEngine]
) -> None:
    engine = _engine(own_server, driver, engines)  # no embedder: its lookups use no index
    assert engine.store(engine.request("before", tenant="acme"), b"old")
    assert engine.count() == 1

    own.flushall()
    assert engine.count() == 0  # no raw ResponseError, nothing there

    req = engine.request("after", tenant="acme")
    assert engine.store(req, b"new")
    assert _has_index(own, engine)  # was: never made again by an exact-only engine
    assert engine.count(tenant="acme") == 1  # was 0: the entry was outside any index
    assert engine.lookup(req).value == b"new"
    assert engine.invalidate(tenant="acme") == 1
    assert list(own.scan_iter(match=engine.layout.scan_pattern())) == []


def test_count_and_invalidate_make_the_index_again(
    own_server: EmbeddedRedis, own: redis.Redis, driver: Driver, engines: list[DrivenEngine]
) -> None:
    engine = _engine(own_server, driver, engines)
    with_tags = engine.request("q", tenant="acme", tags=["billing"])
    assert engine.store(with_tags, b"x")
    own.flushall()
    assert engine.count() == 0
    assert _has_index(own, engine)  # was: count left it missing
    own.flushall()
    assert engine.invalidate(tags=["billing"]) == 0
    assert _has_index(own, engine)  # was: invalidate left it missing
    assert engine.store(with_tags, b"x")
    assert engine.invalidate(tags=["billing"]) == 1  # was 0: unindexed, never found


def test_a_semantic_engine_recovers_on_its_next_store_or_lookup(
    own_server: EmbeddedRedis, own: redis.Redis, driver: Driver, engines: list[DrivenEngine]
) -> None:
    # dims learned from the first vector, as with most embedders
    engine = _engine(own_server, driver, engines, embedder=hashed_embedder())
    question = "What is the refund window?"
    assert engine.store(engine.request("prompt 1", question=question), b"30 days")
    assert engine.lookup(engine.request("prompt 1", question=question)).hit  # set up

    # Emptied, then a store first: it makes the index, and a semantic lookup finds it.
    own.flushall()
    assert engine.store(engine.request("prompt 2", question=question), b"30 days")
    assert _has_index(own, engine)  # was: missing until a semantic lookup failed
    found = engine.lookup(engine.request("prompt 3", question=question))
    assert found.outcome is Outcome.SEMANTIC_HIT and found.value == b"30 days"

    # Emptied, then a semantic lookup first: a miss (nothing is there), not an error.
    own.flushall()
    missed = engine.lookup(engine.request("prompt 4", question=question))
    assert missed.outcome is Outcome.MISS  # was ERROR (the search found no index)
    assert engine.stats(totals=False)["errors"] == {}
    assert engine.breaker.state is BreakerState.CLOSED
    assert _has_index(own, engine)
    assert engine.store(engine.request("prompt 4", question=question), b"30 days")
    found = engine.lookup(engine.request("prompt 5", question=question))
    assert found.outcome is Outcome.SEMANTIC_HIT

    # Emptied, then invalidation by tenant, with no lookup in between.
    own.flushall()
    assert engine.store(engine.request("prompt 6", question=question), b"30 days")
    assert engine.invalidate(tenant="default") == 1
    assert engine.count() == 0


def test_an_import_into_an_emptied_redis_makes_the_index_first(
    own_server: EmbeddedRedis, own: redis.Redis
) -> None:
    engine = CacheEngine(own_server.url, namespace=f"e{uuid.uuid4().hex[:8]}")
    try:
        req = engine.request("q", tenant="acme", tags=["billing"])
        assert engine.store(req, b"answer")
        dump = io.StringIO()
        assert export_entries(engine, dump) == 1
        own.flushall()
        assert import_entries(engine, dump.getvalue().splitlines()) == 1
        assert own.exists(engine.layout.meta_key)  # was: imported into no index
        assert engine.invalidate(tags=["billing"]) == 1
    finally:
        engine.close()
