"""Rough edges found by a new user, each fixed (issue 15 items 4, 7, 8, 12)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, Outcome, tenant
from semcache_core.errors import ConfigurationError
from semcache_core.storage.layout import Layout
from tests.conftest import delete_totals, hashed_embedder
from tests.integration.drivers import Driver


def test_the_empty_tenant_id_is_an_error_everywhere(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder())
    with pytest.raises(ConfigurationError, match="non-empty"):
        engine.request("q", tenant="")  # was: silently the default tenant
    with pytest.raises(ConfigurationError, match="non-empty"):
        engine.invalidate(tenant="")  # was: deleted nothing
    with pytest.raises(ConfigurationError, match="non-empty"), tenant(""):
        pass
    with pytest.raises(ConfigurationError, match="non-empty"):
        SemanticCache(engine=engine.engine, tenant="")


def test_a_malformed_usage_field_is_no_usage(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = driver.make(make_engine)
    req = engine.request("q", tenant="acme")
    assert engine.store(req, b"answer")
    raw_redis.hset(engine.key(req), "usage", '{"in": 1e999, "out": 3}')
    result = engine.lookup(req)
    assert result.outcome == Outcome.EXACT_HIT and result.value == b"answer"
    assert result.tokens_saved == 0
    assert engine.stats("acme", totals=False)["tenants"]["acme"]["errors"] == 0


_SCRIPT = """
import sys
from semcache_core import CacheEngine
engine = CacheEngine(sys.argv[1], namespace=sys.argv[2], stats_flush_interval=3600)
for i in range(25):
    engine.lookup(engine.request(f"question {i}", tenant="script"))
# exits without engine.close()
"""


def test_counts_of_a_short_script_are_written_at_exit(redis_url: str, namespace: str) -> None:
    subprocess.run([sys.executable, "-c", _SCRIPT, redis_url, namespace], check=True, timeout=120)
    engine = CacheEngine(redis_url, namespace=namespace)
    try:
        totals = engine.stats("script")["totals"]
        assert totals is not None and totals["script"]["requests"] == 25
    finally:
        engine.drop_namespace()
        engine.close()


# Counts of a process that stops calling: written by the flush timer while it lives.
_IDLE_SCRIPT = """
import sys, time
from semcache_core import CacheEngine
engine = CacheEngine(sys.argv[1], namespace=sys.argv[2], stats_flush_interval=0.5)
for i in range(25):
    engine.lookup(engine.request(f"question {i}", tenant="idle"))
print("done", flush=True)
time.sleep(600)  # alive, calling nothing, never closed: the test kills it
"""
FLUSH_DEADLINE = 30.0  # generous: a bound on a hang, not a timing claim (expected: ~1 s)


def _persisted_requests(client: redis.Redis, namespace: str, tenant: str) -> int:
    raw = client.hget(Layout("semcache", namespace).stats_key(tenant), "requests")
    return int(raw or 0)  # type: ignore[arg-type]


def test_counts_of_an_idle_process_are_written_while_it_lives(
    redis_url: str, namespace: str, raw_redis: redis.Redis
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _IDLE_SCRIPT, redis_url, namespace],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        done = time.monotonic()
        while _persisted_requests(raw_redis, namespace, "idle") < 25:
            assert child.poll() is None, "the child ended"
            assert time.monotonic() - done < FLUSH_DEADLINE, (
                f"{_persisted_requests(raw_redis, namespace, 'idle')} of 25 lookups persisted"
            )  # was: only what a call had flushed when due, until exit
            time.sleep(0.05)
        assert child.poll() is None  # written while it lives, not at its exit
        print(f"\n[hardening] idle counts written {time.monotonic() - done:.2f} s after")
    finally:
        child.kill()
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
        engine = CacheEngine(redis_url, namespace=namespace, validate=False)
        engine.drop_namespace()
        engine.close()


def test_the_flush_timer_writes_counts_of_either_driver_and_stops_on_close(
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    namespace: str,
    driver: Driver,
) -> None:
    engine = driver.make(make_engine, dims=8, stats_flush_interval=0.05)
    for i in range(3):
        engine.lookup(engine.request(f"q{i}", tenant="idle"))
    # No call from here on: the timer writes them, through the sync client on either
    # driver (an async engine's idle loop runs nothing).
    deadline = time.monotonic() + FLUSH_DEADLINE
    while _persisted_requests(raw_redis, namespace, "idle") < 3:
        assert time.monotonic() < deadline, "the timer never wrote the counts"
        time.sleep(0.01)
    timer = engine.engine._state.flush_timer
    assert timer is not None and timer.thread is not None
    thread = timer.thread
    assert thread.daemon and thread.is_alive()  # never keeps the process alive
    engine.close()  # aclose on the async driver: tells it to stop, without joining
    thread.join(FLUSH_DEADLINE)
    assert not thread.is_alive()
    timer.start()  # a call after close starts no new thread
    assert timer.thread is thread
    delete_totals(raw_redis, "semcache", namespace)
