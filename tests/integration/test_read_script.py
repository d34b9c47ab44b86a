"""A lookup's reads in one round trip (semcache_core/storage/read_script.py).

With a fast embedder, a lookup sends its exact read and its KNN search as one script
call; it must decide exactly as the two separate reads do: exact hits, verified semantic
hits, guarded candidates, misses (with the nearest similarity), other tenants' and
scopes' entries never served. A Redis that refuses the script (here an ACL without
EVAL) gets the separate reads, and the lookup still works. Runs on one node and on the
loopback cluster (tests/integration/conftest.py), on both drivers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis

from semcache_core import CacheEngine, Outcome
from semcache_core.embedding import CallableEmbedder
from tests.integration.drivers import Driver

STORED = "How do I reset my password?"
PARAPHRASE = "How can I reset my password?"  # the verifier agrees
CHANGED = "How do I reset my password on 12/05/2024?"  # a date added: refused
UNRELATED = "What is the capital of France?"


def _unit(v: list[float]) -> list[float]:
    a = np.array(v, dtype=np.float64)
    return list(a / np.linalg.norm(a))


VECTORS = {
    STORED: _unit([1.0, 0.0, 0.0, 0.0]),
    PARAPHRASE: _unit([1.0, 0.12, 0.0, 0.0]),  # cosine ~0.993
    CHANGED: _unit([1.0, 0.0, 0.1, 0.0]),  # cosine ~0.995
    UNRELATED: _unit([0.3, 0.0, 0.0, 1.0]),  # cosine ~0.29
}


def table_embedder() -> CallableEmbedder:
    return CallableEmbedder(lambda text: VECTORS[text], model_id="table-4")


def _cache_of(engine: CacheEngine, driver: Driver) -> Any:
    return engine._acache if driver.is_async else engine._cache


def _lookups(engine: Any, tenant: str = "a", scope: dict[str, Any] | None = None) -> list[Any]:
    out = []
    for text in (STORED, PARAPHRASE, CHANGED, UNRELATED):
        out.append(engine.lookup(engine.request(text, tenant=tenant, scope=scope)))
    return out


def _evals(client: Any) -> int | None:
    """EVAL calls the server has run (``None`` on a cluster: counted per node)."""
    if not isinstance(client, redis.Redis):
        return None
    return int(client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


def test_one_round_trip_decides_as_separate_reads(
    make_engine: Callable[..., CacheEngine], driver: Driver, raw_redis: Any
) -> None:
    engine = driver.make(make_engine, embedder=table_embedder(), dims=4, threshold=0.9)
    assert engine.store(engine.request(STORED, tenant="a"), b"the answer")
    # A second store makes the embedder's call time known (the first may create the index).
    assert engine.store(engine.request(STORED, tenant="other"), b"theirs")
    evals = _evals(raw_redis)
    results = _lookups(engine)
    if evals is not None:
        assert _evals(raw_redis) == evals + 4  # one script call per lookup
    assert [r.outcome for r in results] == [
        Outcome.EXACT_HIT,
        Outcome.SEMANTIC_HIT,
        Outcome.GUARDED,
        Outcome.MISS,
    ]
    assert results[1].value == b"the answer"
    miss = results[3]
    assert miss.similarity is not None and 0.2 < miss.similarity < 0.4  # farthest: no fields
    cache = _cache_of(engine.engine, driver)
    assert cache.script_off_until == 0.0  # the script ran, never refused

    # The same lookups through the separate reads decide the same.
    cache.script_off_until = float("inf")
    again = _lookups(engine)
    assert [(r.outcome, r.value, r.key) for r in again] == [
        (r.outcome, r.value, r.key) for r in results
    ]
    assert again[3].similarity == pytest.approx(miss.similarity, abs=1e-5)
    assert engine.stats(totals=False)["errors"] == {}


def test_other_tenants_and_scopes_are_never_served(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=table_embedder(), dims=4, threshold=0.9)
    assert engine.store(engine.request(STORED, tenant="a", scope={"model": "m1"}), b"a-m1")
    assert engine.store(engine.request(UNRELATED, tenant="a", scope={"model": "m1"}), b"x")
    for tenant, scope in (("b", {"model": "m1"}), ("a", {"model": "m2"})):
        for text in (STORED, PARAPHRASE):
            result = engine.lookup(engine.request(text, tenant=tenant, scope=scope))
            assert result.outcome is Outcome.MISS and result.value is None
    assert engine.stats(totals=False)["errors"] == {}


@pytest.fixture
def no_eval_url(redis_url: str, namespace: str) -> Any:
    """A user of the session Redis without EVAL (a single node only)."""
    admin = redis.Redis.from_url(redis_url)
    # Never a cluster (conftest.NODE_ONLY): ACL users are per node there.
    assert not int(admin.info("cluster").get("cluster_enabled", 0))
    user = f"noeval-{namespace}"
    admin.execute_command(
        "ACL", "SETUSER", user, "reset", "on", ">pw-noeval", "~*", "&*", "+@all", "-eval"
    )
    try:
        yield redis_url.replace("redis://", f"redis://{user}:pw-noeval@")
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_a_refused_script_falls_back_to_separate_reads(
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
    no_eval_url: str,
    namespace: str,
) -> None:
    owner = driver.make(make_engine, embedder=table_embedder(), dims=4, threshold=0.9)
    assert owner.store(owner.request(STORED, tenant="a"), b"the answer")
    engine = driver.make(
        CacheEngine,
        no_eval_url,
        embedder=table_embedder(),
        dims=4,
        threshold=0.9,
        namespace=namespace,
    )
    try:
        assert engine.store(engine.request(STORED, tenant="b"), b"b's")  # times the embedder
        results = _lookups(engine)
        assert [r.outcome for r in results] == [
            Outcome.EXACT_HIT,
            Outcome.SEMANTIC_HIT,
            Outcome.GUARDED,
            Outcome.MISS,
        ]
        errors = engine.stats(totals=False)["errors"]
        assert errors == {"read_script": 1}  # refused once, then not asked again
    finally:
        if not driver.is_async:
            engine.engine.close()
