"""Prometheus metrics, counters persisted in Redis, and cost saved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import redis
from langchain_core.globals import get_llm_cache, set_llm_cache
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, tenant
from semcache_core.pricing import Usage
from semcache_core.prometheus import PrometheusMetrics
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import delete_totals, hashed_embedder
from tests.integration.drivers import Driver


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exposition_parses_and_agrees_with_stats(
    make_engine: Callable[..., CacheEngine], namespace: str, driver: Driver
) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, tenant_label=True)
    engine = driver.make(make_engine, embedder=hashed_embedder(), metrics=metrics, threshold=0.99)
    for t in ("acme", "globex"):
        for i in range(5):
            req = engine.request(f"question {i}", tenant=t)
            if not engine.lookup(req).hit:
                engine.store(req, b"answer", usage=Usage(10, 20, "gpt-4o-mini"))
        for i in range(3):
            assert engine.lookup(engine.request(f"question {i}", tenant=t)).hit
    samples = _samples(registry)
    stats = engine.stats()["tenants"]
    for t in ("acme", "globex"):

        def get(name: str, **labels: str) -> float:
            key = (name, tuple(sorted({"namespace": namespace, **labels}.items())))
            return samples.get(key, 0.0)

        assert (
            get("semcache_requests_total", layer="exact", outcome="exact_hit", tenant=t)
            == (stats[t]["exact_hits"])
        )
        assert (
            get("semcache_requests_total", layer="none", outcome="miss", tenant=t)
            == (stats[t]["misses"])
        )
        assert get("semcache_stores_total", tenant=t) == stats[t]["stores"] == 5
        assert get("semcache_tokens_saved_total", tenant=t) == stats[t]["tokens_saved"] == 90
        assert get("semcache_cost_saved_usd_total", tenant=t) == pytest.approx(
            stats[t]["cost_saved_usd"]
        )
        assert stats[t]["cost_saved_usd"] == pytest.approx(3 * (10 * 0.15 + 20 * 0.60) / 1e6)
    count = samples[
        ("semcache_lookup_seconds_count", (("namespace", namespace), ("outcome", "exact_hit")))
    ]
    assert count == 6


def test_one_registry_serves_many_engines(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    registry = CollectorRegistry()
    first = PrometheusMetrics.get(registry)
    assert PrometheusMetrics.get(registry) is first  # registering twice would raise
    a = driver.make(make_engine, metrics=first)
    b = driver.make(make_engine, metrics=PrometheusMetrics.get(registry))
    a.lookup(a.request("x"))
    b.lookup(b.request("y"))
    total = sum(
        v for (name, _), v in _samples(registry).items() if name == "semcache_requests_total"
    )
    assert total == 2


_WORKER = textwrap.dedent(
    """
    import sys
    from semcache_core import CacheEngine
    url, namespace, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = CacheEngine(url, namespace=namespace, dims=8, stats_flush_interval=60)
    for i in range(n):
        req = engine.request(f"q{i % 3}", tenant="acme")
        if not engine.lookup(req).hit:
            engine.store(req, b"a")
    engine.close()  # writes what is still buffered
    """
)


def test_persisted_counters_survive_restarts_and_add_up_across_processes(
    redis_url: str, namespace: str, raw_redis: redis.Redis, driver: Driver
) -> None:
    """The workers write with the sync driver; this process reads, adds and writes back
    with the driver under test."""
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", _WORKER, redis_url, namespace, str(n)])
            for n in (10, 20)
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        engine = driver.make(CacheEngine, redis_url, namespace=namespace, dims=8)
        try:
            totals = engine.stats()["totals"]["acme"]
            assert totals["requests"] == 30
            assert totals["exact_hits"] + totals["misses"] == 30
            assert totals["stores"] == totals["misses"] >= 3
            assert totals["entries"] == 3
            # This process adds its own, and a restart keeps everything.
            engine.lookup(engine.request("q0", tenant="acme"))
        finally:
            engine.close()
        again = driver.make(CacheEngine, redis_url, namespace=namespace, dims=8)
        try:
            stats = again.stats()
            assert stats["totals"]["acme"]["requests"] == 31
            assert stats["tenants"] == {}  # nothing counted in this process yet
            assert stats["index"]["entries"] == 3 and stats["index"]["memory_mb"] >= 0
        finally:
            again.drop_index()
            again.close()
    finally:
        delete_totals(raw_redis, "semcache", namespace)


def test_stats_when_redis_is_down(driver: Driver) -> None:
    engine = driver.make(CacheEngine, "redis://127.0.0.1:1/0", dims=8, require_redis=False)
    engine.lookup(engine.request("q"))
    stats = engine.stats()
    assert stats["totals"] is None and "Redis" in stats["totals_error"]
    assert stats["tenants"]["default"]["errors"] == 1
    engine.close()


def test_cost_saved_through_langchain(redis_url: str, namespace: str) -> None:
    cache = SemanticCache(
        redis_url=redis_url,
        embeddings=hashed_embedder(),
        namespace=namespace,
        prices={"support-small": (0.15, 0.60)},
    )
    model = FakeSupportChatModel(model_name="support-small", latency=0.0)
    unknown = FakeSupportChatModel(model_name="no-price-known", latency=0.0)
    before = get_llm_cache()
    set_llm_cache(cache)
    try:
        with tenant("acme"):
            first = model.invoke("How do I reset my password?")
            hit = model.invoke("How do I reset my password?")
            unknown.invoke("How do I reset my password?")
            unknown_hit = unknown.invoke("How do I reset my password?")
    finally:
        set_llm_cache(before)
    usage = first.usage_metadata
    assert usage is not None
    marker = hit.response_metadata["semcache"]
    assert marker["tokens_saved"] == usage["total_tokens"]
    expected = (usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1e6
    assert marker["cost_saved_usd"] == pytest.approx(expected, abs=1e-8)
    # A model with no known price saves its tokens but zero dollars: never a guess.
    unknown_marker = unknown_hit.response_metadata["semcache"]
    assert unknown_marker["tokens_saved"] > 0 and unknown_marker["cost_saved_usd"] == 0.0
    stats = cache.engine.stats()
    assert stats["tenants"]["acme"]["cost_saved_usd"] == pytest.approx(expected)
    cache.engine.drop_index()
    cache.engine.close()
