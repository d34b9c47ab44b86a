"""Entries the index cannot hold (hardening issue 15, item 5).

RediSearch leaves a hash out of the index when a NUMERIC field does not parse
(``created_at='nan'``, ``expires_at='garbage'``): no search, count or filtered
invalidation sees it again. semcache never writes one (the store refuses, an import
repairs the format or refuses the file), and invalidating a tenant no longer depends on
the index alone: a SCAN of the tenant's key prefix removes what the index left out.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable

import pytest
import redis

from semcache_core import CacheEngine
from semcache_core.errors import ConfigurationError
from semcache_core.transfer import export_entries, import_entries
from tests.conftest import hashed_embedder
from tests.integration.drivers import Driver


def _plant(raw: redis.Redis, engine: CacheEngine, model_key: str, name: str, **bad: str) -> str:
    """A copy of a real entry under its tenant's prefix, with ``bad`` fields, written
    straight with redis-py (as another tool, or a bug, would)."""
    fields = {k.decode(): v for k, v in raw.hgetall(model_key).items()}  # type: ignore[union-attr]
    key = model_key.rsplit(":", 1)[0] + ":" + name
    raw.hset(key, mapping={**fields, **bad})
    return key


def test_invalidating_a_tenant_removes_entries_the_index_left_out(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder())
    acme = engine.request("What is the refund window?", tenant="acme")
    globex = engine.request("What is the refund window?", tenant="globex")
    assert engine.store(acme, b"30 days") and engine.store(globex, b"14 days")
    nan = _plant(raw_redis, engine.engine, engine.key(acme), "nan", created_at="nan")
    garbage = _plant(raw_redis, engine.engine, engine.key(acme), "garbage", expires_at="garbage")
    assert engine.count(tenant="acme") == 1  # the premise: the index does not hold them

    assert engine.invalidate(tenant="acme") == 3  # was 1: both planted entries stayed
    assert raw_redis.exists(nan, garbage, engine.key(acme)) == 0
    pattern = engine.layout.tenant_prefix("acme") + "*"
    assert list(raw_redis.scan_iter(match=pattern)) == []
    assert engine.count(tenant="globex") == 1
    assert engine.lookup(globex).value == b"14 days"


@pytest.mark.parametrize("now", [math.nan, math.inf])
def test_the_engine_never_writes_a_number_the_index_cannot_parse(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    driver: Driver,
    now: float,
) -> None:
    # A broken clock is the only way the engine's own write could carry one.
    engine = driver.make(make_engine, dims=8, clock=lambda: now)
    req = engine.request("q", tenant="acme")
    assert engine.store(req, b"answer") is False  # was True: written, unindexed, unfindable
    assert raw_redis.exists(engine.key(req)) == 0
    assert engine.stats("acme", totals=False)["errors"] == {"store": 1}


def _export(engine: CacheEngine) -> list[dict[str, object]]:
    out = io.StringIO()
    export_entries(engine, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_an_import_repairs_number_formats_and_refuses_unparseable_numbers(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis
) -> None:
    engine = make_engine(dims=8)
    req = engine.request("q", tenant="acme")
    assert engine.store(req, b"answer")
    (record,) = _export(engine)
    engine.invalidate(tenant="acme")
    fields = record["fields"]
    assert isinstance(fields, dict)

    # A number RediSearch would not parse as written (" 1.5", "") is written as it does.
    spaced = {**record, "fields": {**fields, "created_at": " 1.5 ", "expires_at": ""}}
    assert import_entries(engine, [json.dumps(spaced)]) == 1
    assert raw_redis.hget(engine.key(req), "created_at") == b"1.5"
    assert not raw_redis.hexists(engine.key(req), "expires_at")  # empty: none
    assert engine.count(tenant="acme") == 1  # was 0: imported, out of the index
    engine.invalidate(tenant="acme")

    # One that is no finite number refuses the file, naming the line; nothing is written.
    good = json.dumps(record)
    for name, value in (("created_at", "nan"), ("expires_at", "garbage"), ("ttl", "inf")):
        bad = json.dumps({**record, "fields": {**fields, name: value}})
        with pytest.raises(ConfigurationError, match=f"line 2: {name} is not a finite number"):
            import_entries(engine, [good, bad])
        assert raw_redis.exists(engine.key(req)) == 0


def test_the_store_refuses_an_entry_the_index_would_leave_out(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis
) -> None:
    engine = make_engine(dims=8)
    key = engine.layout.tenant_prefix("acme") + "direct"
    fields = {"v": b"1", "payload": b"x", "created_at": b"nan"}
    with pytest.raises(ValueError, match="created_at is not a finite number"):
        engine._store.write_entries([(key, fields, None)])
    with pytest.raises(ValueError, match="created_at is not a finite number"):
        engine._store.write(key, fields, None)
    with pytest.raises(ValueError, match="expires_at is not a finite number"):
        engine._store.touch(key, 10.0, math.nan)
    assert raw_redis.exists(key) == 0
