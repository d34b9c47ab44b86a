"""Rough edges found by a new user, each fixed (issue 15 items 4, 7, 8, 12)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
import redis

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, Outcome, tenant
from semcache_core.errors import ConfigurationError
from tests.conftest import hashed_embedder
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
