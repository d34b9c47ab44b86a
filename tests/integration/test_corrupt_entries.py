"""A corrupt exact entry, on an exact-only engine (no embedder, so no semantic search
can find the entry and delete it instead): the lookup is a miss, the entry is deleted
and counted, and the next store replaces it. Sync and async."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from semcache_core import CacheEngine, CacheRequest, LookupResult, Outcome, SerializationError


def _json(payload: bytes, codec: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError as exc:  # not data this decoder reads: corrupt, deleted
        raise SerializationError(str(exc)) from exc


def damage(raw_redis: redis.Redis, key: str, how: str) -> None:
    if how == "undecodable_payload":
        raw_redis.hset(key, "payload", b"\xff\x00 not a serialized answer {")
    else:  # an entry without its version field cannot be read at all
        assert raw_redis.hdel(key, "v") == 1


async def lookup(engine: CacheEngine, request: CacheRequest, driver: str) -> LookupResult:
    if driver == "sync":
        return engine.lookup(request, decode=_json)
    return await engine.alookup(request, decode=_json)


async def store(engine: CacheEngine, request: CacheRequest, payload: bytes, driver: str) -> bool:
    if driver == "sync":
        return engine.store(request, payload)
    return await engine.astore(request, payload)


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("how", ["undecodable_payload", "missing_version"])
async def test_corrupt_exact_entry_is_deleted_on_an_exact_only_engine(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: str, how: str
) -> None:
    engine = make_engine()  # no embedder: the exact layer alone
    assert engine.embedder is None
    request = engine.request("What is your refund policy?")
    assert await store(engine, request, b'"good"', driver)
    hit = await lookup(engine, request, driver)
    assert hit.outcome is Outcome.EXACT_HIT and hit.value == "good"
    assert hit.key is not None and raw_redis.exists(hit.key) == 1

    damage(raw_redis, hit.key, how)
    result = await lookup(engine, request, driver)
    assert result.outcome is Outcome.MISS and result.value is None
    assert raw_redis.exists(hit.key) == 0  # deleted, not left to fail every lookup
    tenant = engine.stats(totals=False)["tenants"]["default"]
    assert tenant["corrupt_entries"] == 1
    assert engine.stats(totals=False)["errors"] == {}

    # Gone: the next lookup is a plain miss, not a second corrupt entry.
    assert (await lookup(engine, request, driver)).outcome is Outcome.MISS
    assert engine.stats(totals=False)["tenants"]["default"]["corrupt_entries"] == 1

    assert await store(engine, request, b'"fresh"', driver)
    fresh = await lookup(engine, request, driver)
    assert fresh.outcome is Outcome.EXACT_HIT and fresh.value == "fresh"
    await engine.aclose()
