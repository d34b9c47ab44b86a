"""Coalescing and embedding micro-batching as wired into the engine and LangChain."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from langchain_core.globals import get_llm_cache, set_llm_cache

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, Outcome
from semcache_core.microbatch import MicroBatcher
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import hashed_embedder


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
