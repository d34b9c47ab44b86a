"""Coalescing and embedding micro-batching as wired into the engine and LangChain."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from langchain_core.globals import get_llm_cache, set_llm_cache

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, Outcome, Usage
from semcache_core.entry import vector_bytes
from semcache_core.microbatch import MicroBatcher
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import hashed_embedder
from tests.unit.test_microbatch import FakeRemoteEmbedder


class CountingBatchEmbedder:
    """A hashed embedder with a batch method that counts its calls."""

    def __init__(self) -> None:
        self.inner = hashed_embedder()
        self.model_id = "counting"
        self.batch_calls: list[int] = []

    def embed(self, text: str) -> list[float]:
        return self.inner.embed(text)

    async def aembed(self, text: str) -> list[float]:
        return self.inner.embed(text)

    async def aembed_many(self, texts: list[str]) -> list[list[float]]:
        self.batch_calls.append(len(texts))
        await asyncio.sleep(0.005)
        return [self.inner.embed(t) for t in texts]


async def test_fifty_concurrent_identical_ainvokes_call_the_model_once(
    redis_url: str, namespace: str
) -> None:
    cache = SemanticCache(
        redis_url=redis_url, embeddings=hashed_embedder(), namespace=namespace, coalesce="process"
    )
    model = FakeSupportChatModel(model_name="support-small", latency=0.2)
    before = get_llm_cache()
    set_llm_cache(cache)
    try:
        answers = await asyncio.gather(
            *(model.ainvoke("How do I reset my password?") for _ in range(50))
        )
    finally:
        set_llm_cache(before)
    assert model.calls == 1
    assert len({a.content for a in answers}) == 1
    stats = cache.engine.stats(totals=False)
    assert stats["tenants"]["default"]["requests"] == 50  # each counted once
    assert stats["coalesce"]["leaders"] == 1 and stats["coalesce"]["waiters"] == 49
    await cache.engine.aclose()
    cache.engine.drop_index()
    cache.engine.close()


def test_sixteen_threads_call_the_model_once(redis_url: str, namespace: str) -> None:
    cache = SemanticCache(
        redis_url=redis_url, embeddings=hashed_embedder(), namespace=namespace, coalesce="redis"
    )
    model = FakeSupportChatModel(model_name="support-small", latency=0.2)
    before = get_llm_cache()
    set_llm_cache(cache)
    barrier = threading.Barrier(16)
    results: list[Any] = []

    def ask() -> None:
        barrier.wait()
        results.append(model.invoke("Where is my order?"))

    try:
        threads = [threading.Thread(target=ask) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        set_llm_cache(before)
    assert len(results) == 16 and model.calls == 1
    cache.engine.drop_index()
    cache.engine.close()


async def test_concurrent_semantic_lookups_share_embedder_calls(
    redis_url: str, namespace: str
) -> None:
    embedder = CountingBatchEmbedder()
    engine = CacheEngine(redis_url, embedder=embedder, namespace=namespace, dims=16)
    assert isinstance(engine.embedder.inner, MicroBatcher)  # type: ignore[union-attr]
    try:
        await engine.astore(engine.request("seed question"), b"seed")
        embedder.batch_calls.clear()
        requests = [engine.request(f"question number {i}") for i in range(64)]
        results = await asyncio.gather(*(engine.alookup(r) for r in requests))
        assert all(r.outcome == Outcome.MISS for r in results)
        print(f"\n64 concurrent lookups -> {len(embedder.batch_calls)} embedder batch calls "
              f"of sizes {embedder.batch_calls}")  # fmt: skip
        assert sum(embedder.batch_calls) == 64
        assert len(embedder.batch_calls) <= 8
        # Same answers as without batching: every similarity to the seed matches.
        plain = CacheEngine(
            redis_url, embedder=hashed_embedder(), namespace=namespace, embed_batch_window=None
        )
        try:
            unbatched = [plain.lookup(r) for r in requests]
        finally:
            plain.close()
        assert [r.similarity for r in unbatched] == [r.similarity for r in results]
        assert all(r.similarity is not None for r in results)
    finally:
        await engine.aclose()
        engine.drop_index()
        engine.close()


async def test_64_concurrent_lookups_share_few_inner_calls(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis
) -> None:
    inner = FakeRemoteEmbedder()
    batcher = MicroBatcher(inner)
    engine = make_engine(embedder=batcher, dims=inner.dims)
    questions = [f"distinct question number {i}" for i in range(64)]
    requests = [engine.request(q) for q in questions]
    await engine.alookup(requests[0])  # warm: setup and the tenant policy
    before = len(inner.batch_sizes)
    results = await asyncio.gather(*(engine.alookup(r) for r in requests[1:]))
    assert all(not r.hit for r in results)
    calls = len(inner.batch_sizes) - before
    print(
        f"\n63 concurrent lookups: {calls} inner embedding call(s), batch sizes "
        f"{inner.batch_sizes[before:]}; 0 single calls"
    )
    assert calls <= 8 and inner.single_calls == 0
    # Identical vectors: what the stores wrote equals the unbatched embedding.
    assert all(await asyncio.gather(*(engine.astore(r, b"a") for r in requests)))
    for q, r in zip(questions, requests, strict=True):
        stored = raw_redis.hget(engine.key(r), "vector")
        assert stored == vector_bytes(await inner.aembed(q), engine.config.datatype)
    await engine.aclose()


# -- what coalesced lookups count -------------------------------------------------------
COALESCE = pytest.mark.parametrize("mode", ["process", "redis"])


def _counts(engine: CacheEngine) -> tuple[int, int, int, int]:
    view = engine.stats(totals=False)["tenants"]["default"]
    return view["requests"], view["misses"], view["exact_hits"], view["tokens_saved"]


def _waiters(engine: CacheEngine) -> int:
    return int(engine.stats(totals=False)["coalesce"]["waiters"])


@COALESCE
async def test_a_hit_on_the_first_pass_counts_as_a_hit(
    make_engine: Callable[..., CacheEngine], mode: str
) -> None:
    engine = make_engine(coalesce=mode)
    sync_req, async_req = engine.request("asked in sync"), engine.request("asked in async")
    assert engine.lookup(sync_req).outcome is Outcome.MISS  # leads
    assert engine.store(sync_req, b"answer", usage=Usage(3, 4))
    assert (await engine.alookup(async_req)).outcome is Outcome.MISS
    assert await engine.astore(async_req, b"answer", usage=Usage(3, 4))
    assert _counts(engine) == (2, 2, 0, 0)
    assert engine.lookup(sync_req).outcome is Outcome.EXACT_HIT
    assert (await engine.alookup(async_req)).outcome is Outcome.EXACT_HIT
    assert _counts(engine) == (4, 2, 2, 14)  # each request once, the hits as hits
    await engine.aclose()


@COALESCE
def test_a_waiter_served_the_leaders_answer_counts_as_a_hit(
    make_engine: Callable[..., CacheEngine], mode: str
) -> None:
    engine = make_engine(coalesce=mode, coalesce_wait=60.0)
    request = engine.request("one cold question")
    assert engine.lookup(request).outcome is Outcome.MISS  # the leader: it calls the LLM
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(engine.lookup, request)
        for _ in range(10_000):  # until the waiter has joined the leader's flight
            if _waiters(engine) or waiter.done():
                break
            time.sleep(0.001)
        assert _waiters(engine) == 1 and not waiter.done()
        assert engine.store(request, b"answer", usage=Usage(3, 4))  # the leader's answer
        result = waiter.result(timeout=60)
    assert result.outcome is Outcome.EXACT_HIT and result.value == b"answer"
    assert _counts(engine) == (2, 1, 1, 7)
    assert engine.stats(totals=False)["coalesce"]["timeouts"] == 0


@COALESCE
async def test_an_async_waiter_served_the_leaders_answer_counts_as_a_hit(
    make_engine: Callable[..., CacheEngine], mode: str
) -> None:
    engine = make_engine(coalesce=mode, coalesce_wait=60.0)
    request = engine.request("one cold async question")
    assert (await engine.alookup(request)).outcome is Outcome.MISS  # the leader
    waiter = asyncio.ensure_future(engine.alookup(request))
    for _ in range(10_000):  # until the waiter has joined the leader's flight
        if _waiters(engine) or waiter.done():
            break
        await asyncio.sleep(0.001)
    assert _waiters(engine) == 1 and not waiter.done()
    assert await engine.astore(request, b"answer", usage=Usage(3, 4))
    result = await waiter
    assert result.outcome is Outcome.EXACT_HIT and result.value == b"answer"
    assert _counts(engine) == (2, 1, 1, 7)
    assert engine.stats(totals=False)["coalesce"]["timeouts"] == 0
    await engine.aclose()


@pytest.mark.parametrize("driver_name", ["sync", "async"])
async def test_a_bypassed_coalesced_lookup_counts_once(
    make_engine: Callable[..., CacheEngine], driver_name: str
) -> None:
    engine = make_engine(coalesce="process", breaker_failures=1)
    engine.breaker.record_failure()  # open: the cache is skipped
    request = engine.request("asked while the breaker is open")
    if driver_name == "sync":
        result = engine.lookup(request)
    else:
        result = await engine.alookup(request)
    assert result.outcome is Outcome.BYPASS
    tenant = engine.stats(totals=False)["tenants"]["default"]
    assert tenant["requests"] == 1 and tenant["bypassed"] == 1
