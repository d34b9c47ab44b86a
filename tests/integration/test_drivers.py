"""The `driver` fixture itself: each run really goes through its own driver, reuses one
client for the test's loop, and refuses what it cannot run on both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from semcache_core import CacheEngine, Outcome, cache_context, last_lookup
from semcache_core.storage._async.store import AsyncStore
from semcache_core.storage._sync.store import SyncStore
from tests.conftest import hashed_embedder
from tests.integration.drivers import Driver


def test_each_run_uses_only_its_own_driver(
    make_engine: Callable[..., CacheEngine], driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_engine(embedder=hashed_embedder(), dims=16)  # validated: the index exists
    other = SyncStore if driver.is_async else AsyncStore

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the {driver.name} run used the other driver")

    for name in ("read", "search", "write", "touch", "read_policy", "count", "add_counts"):
        monkeypatch.setattr(other, name, fail)
    engine = driver(raw)
    request = engine.request("which driver?", tenant="acme")
    assert engine.lookup(request).outcome is Outcome.MISS
    assert engine.store(request, b"this one")
    assert engine.lookup(request).outcome is Outcome.EXACT_HIT
    assert engine.count("acme") == 1
    assert engine.stats("acme")["totals"]["acme"]["stores"] == 1
    # One event loop for the whole test: one async client, made once and reused.
    assert len(raw._async_stores._stores) == (1 if driver.is_async else 0)


def test_context_flows_in_and_last_lookup_flows_out(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = driver(make_engine(embedder=hashed_embedder(), dims=16))
    with cache_context(tenant="acme"):
        request = engine.request("q")
    engine.store(request, b"a")
    with cache_context(tenant="acme"):
        assert engine.lookup(engine.request("q")).hit
    result = last_lookup()
    assert result is not None and result.outcome is Outcome.EXACT_HIT


class _WithoutTwin(CacheEngine):
    def purge(self) -> int:  # an I/O call someone forgot to give an async form
        return 0


def test_a_method_without_an_async_form_fails_loudly(
    redis_url: str, namespace: str, driver: Driver
) -> None:
    raw = _WithoutTwin(redis_url, namespace=namespace, validate=False)
    try:
        engine = driver(raw)
        with pytest.raises(AttributeError, match="no async form"):
            engine.purge()
        with pytest.raises(AttributeError, match="call lookup"):
            engine.alookup(engine.request("q"))
        with pytest.raises(AttributeError, match="private"):
            engine._state  # noqa: B018
        assert engine.config.namespace == namespace  # plain attributes are the engine's
    finally:
        raw.close()
