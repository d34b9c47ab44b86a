"""Async is native: redis.asyncio and ``aembed_query``, never the sync client, the sync
embedder, a thread pool or ``asyncio.run``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langchain_semcache import SemanticCache, tenant
from semcache_core import CacheEngine
from semcache_core.storage._sync.store import SyncStore
from semcache_demo.langchain_fakes import FakeSupportChatModel
from semcache_demo.workload import INTENTS, answer_for
from tests.conftest import CountingEmbeddings

PACKAGES = [
    Path(__file__).parents[2] / "semcache_core",
    Path(__file__).parents[2] / "langchain_semcache",
    Path(__file__).parents[2] / "semcache_demo",
]
# Entry points that own their event loop (the CLI) may start one; library calls may not.
ENTRY_POINTS = {"cli.py", "langchain_demo.py"}


def booby_trap_sync(monkeypatch: pytest.MonkeyPatch, embeddings: CountingEmbeddings) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an async call used a sync code path")

    for name in ("read", "search", "write", "touch", "unlink", "delete_matching", "delete_scan"):
        monkeypatch.setattr(SyncStore, name, fail)
    monkeypatch.setattr(embeddings, "embed_query", fail)


async def test_async_path_is_native(
    make_engine: Callable[..., CacheEngine],
    counting_embeddings: CountingEmbeddings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=counting_embeddings, dims=384))
    booby_trap_sync(monkeypatch, counting_embeddings)
    monkeypatch.setattr(SemanticCache, "lookup", lambda *a: pytest.fail("sync lookup"))
    monkeypatch.setattr(SemanticCache, "update", lambda *a: pytest.fail("sync update"))
    model = FakeSupportChatModel(cache=cache)
    first = await model.ainvoke("How do I reset my password?")
    again = await model.ainvoke("How do I reset my password?")
    para = await model.ainvoke("I forgot my password, how can I reset it?")
    assert model.calls == 1
    assert again.response_metadata["semcache"]["layer"] == "exact"
    assert para.response_metadata["semcache"]["layer"] == "semantic"
    assert para.content == first.content
    assert counting_embeddings.async_texts == [
        "How do I reset my password?",
        "I forgot my password, how can I reset it?",
    ]
    await cache.aclear()
    assert (await model.ainvoke("How do I reset my password?")).response_metadata.get(
        "semcache"
    ) is None
    await cache.engine.aclose()


async def test_200_concurrent_ainvoke_on_one_loop(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    # The burst opens up to 100 connections at once while MiniLM runs on the same two
    # cores; the default 0.5 s connect timeout (which bounds unreachable hosts) was seen to
    # expire under a full CI run. This test is about concurrency, not timeouts.
    engine = make_engine(embedder=embeddings, threshold=0.85, connect_timeout=3.0)
    cache = SemanticCache(engine=engine)
    model = FakeSupportChatModel(cache=cache, latency=0.02)
    questions = [q for intent in INTENTS[:25] for q in intent.questions[:2]]  # 50 texts

    async def ask(i: int) -> tuple[str, str]:
        q = questions[i % len(questions)]
        with tenant(f"tenant-{i % 4}"):
            msg = await model.ainvoke(q)
        return q, str(msg.content)

    results = await asyncio.gather(*(ask(i) for i in range(200)))
    assert len(results) == 200
    assert all(answer == answer_for(q) for q, answer in results)
    stats = cache.engine.stats()
    assert stats["errors"] == {}
    assert sum(t["requests"] for t in stats["tenants"].values()) == 200
    # a second wave is served from the cache
    calls = model.calls
    await asyncio.gather(*(ask(i) for i in range(200)))
    assert model.calls == calls
    await cache.engine.aclose()


def test_engine_works_across_event_loops(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    """Jupyter and pytest run several loops in one process: the engine keeps one async
    client per loop instead of failing with 'attached to a different loop'."""
    engine = make_engine(embedder=embeddings)

    async def once(payload: bytes) -> bool:
        req = engine.request("loop question")
        hit = (await engine.alookup(req)).hit
        await engine.astore(req, payload)
        await engine.aclose()
        return hit

    assert asyncio.run(once(b"1")) is False
    assert asyncio.run(once(b"2")) is True


def test_no_asyncio_run_or_thread_hop_in_library_code() -> None:
    """Redis I/O is never pushed to a thread. The one allowed hop is the bundled local
    embedder's CPU-bound inference, marked at its line."""
    pattern = re.compile(r"asyncio\.run\(|run_in_executor|to_thread|ThreadPoolExecutor")
    offenders = [
        f"{path.name}:{n}"
        for package in PACKAGES
        for path in package.rglob("*.py")
        if path.name not in ENTRY_POINTS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "# cpu-bound, not I/O" not in line
    ]
    assert offenders == []


async def test_an_async_app_builds_and_runs_the_engine_without_sync_io(
    redis_url: str,
    namespace: str,
    counting_embeddings: CountingEmbeddings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`acreate` sets up on the running loop: no sync Redis command, no sync embedding,
    and the admin calls have async forms too."""
    store_methods = [n for n in vars(SyncStore) if not n.startswith("_")]
    for name in store_methods:
        monkeypatch.setattr(SyncStore, name, lambda *a, **k: pytest.fail("sync I/O"))
    monkeypatch.setattr(counting_embeddings, "embed_query", lambda *a: pytest.fail("sync embed"))
    engine = await CacheEngine.acreate(
        redis_url, embedder=counting_embeddings, namespace=namespace, dims=384
    )
    try:
        request = engine.request("How do I reset my password?")
        assert (await engine.alookup(request)).outcome.value == "miss"
        assert await engine.astore(request, b"Use the reset link.")
        assert (await engine.alookup(request)).hit
        assert await engine.acount() == 1
        await engine.aset_policy("acme", threshold=0.95)
        assert (await engine.aget_policy("acme")).threshold == 0.95
        stats = await engine.astats()
        assert stats["totals"] is not None and stats["index"]["entries"] == 1
        assert await engine.adrop_namespace() == 1
        assert counting_embeddings.async_texts == ["How do I reset my password?"]
    finally:
        await engine.aclose()
