"""Embedding micro-batching, no Redis: concurrent calls share inner calls, a lone call
waits nothing (wired into the engine: tests/integration/test_engine_concurrency.py).

Claims: gathered calls go out as one batch, duplicates once, with vectors equal to
unbatched ones (deterministic embedder) or within float noise (the real
all-MiniLM-L6-v2, where batching pads); a call with no company costs no window, calls
arriving during a batch wait at most the window (both measured on an event loop whose
clock only moves when the loop would sleep, so the figures are exact whatever the
machine's load); LangChain/LlamaIndex document batch methods are used only on request;
errors reach every caller of the batch; with one batch in flight at most
(the local model), calls during a batch wait for it and go out together next.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from semcache_core.embedding import SentenceTransformerEmbedder
from semcache_core.microbatch import BatchQueue, MicroBatcher, find_batch_method
from tests.conftest import hashed_embedder

INNER_LATENCY = 0.005  # a remote embedding API's round trip, scaled down


class FakeRemoteEmbedder:
    """An async embedder with a batch endpoint; counts both kinds of call."""

    def __init__(self, dims: int = 16) -> None:
        self._hashed = hashed_embedder(dims)
        self.model_id = "fake-remote"
        self.dims = dims
        self.single_calls = 0
        self.batch_sizes: list[int] = []
        self.dispatched: dict[str, float] = {}  # text -> when its batch call began

    def embed(self, text: str) -> list[float]:
        return self._hashed.embed(text)

    async def aembed(self, text: str) -> list[float]:
        self.single_calls += 1
        await asyncio.sleep(INNER_LATENCY)
        return self._hashed.embed(text)

    async def aembed_many(self, texts: list[str]) -> list[list[float]]:
        self.batch_sizes.append(len(texts))
        self.dispatched.update(dict.fromkeys(texts, asyncio.get_running_loop().time()))
        await asyncio.sleep(INNER_LATENCY)
        return [self._hashed.embed(t) for t in texts]


class LangChainLike:
    """embed_query/aembed_query plus a document batch method."""

    def __init__(self) -> None:
        self._hashed = hashed_embedder(8)
        self.model = "lc-like"
        self.documents_calls = 0

    def embed_query(self, text: str) -> list[float]:
        return self._hashed.embed(text)

    async def aembed_query(self, text: str) -> list[float]:
        return self._hashed.embed(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_calls += 1
        return [self._hashed.embed(t) for t in texts]


async def test_gathered_calls_are_one_batch_and_equal_unbatched() -> None:
    inner = FakeRemoteEmbedder()
    batcher = MicroBatcher(inner)
    texts = [f"t{i % 40}" for i in range(64)]  # duplicates go once
    vectors = await asyncio.gather(*(batcher.aembed(t) for t in texts))
    assert inner.batch_sizes == [40]
    for t, v in zip(texts, vectors, strict=True):
        assert v == await inner.aembed(t)


T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the loop would sleep: instead of
    waiting for its next timer, it jumps there. Nothing else is changed, so ``call_soon``
    runs on the next turn and timers fire in order; but a wait measured with
    ``loop.time()`` is exact, whatever the machine's load. For code without I/O."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self._now = 0.0
        poll = self._selector.select

        def select(timeout: float | None = None) -> list[Any]:
            events = poll(0)
            if not events and timeout:
                self._now += timeout
            return events

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._now


def on_virtual_clock(scenario: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(scenario)
    finally:
        loop.close()


def test_a_lone_call_pays_no_window() -> None:
    async def lone_calls() -> list[float]:
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(inner, window=0.05)  # a window a lone call would notice
        overheads = []
        for i in range(20):
            started = loop.time()
            await batcher.aembed(f"alone {i}")
            overheads.append(loop.time() - started - INNER_LATENCY)
        return overheads

    inner = FakeRemoteEmbedder()
    overheads = on_virtual_clock(lone_calls())
    print(f"\nlone call overhead: at most {max(overheads) * 1000:.3f} ms (window 50 ms)")
    assert max(overheads) < 1e-9  # the inner call's own latency, nothing more
    assert inner.batch_sizes == [1] * 20


def test_calls_during_a_batch_wait_at_most_the_window() -> None:
    inner = FakeRemoteEmbedder()
    window = 0.002
    batcher = MicroBatcher(inner, window=window)
    submitted: dict[str, float] = {}

    async def trickle() -> None:
        loop = asyncio.get_running_loop()

        def submit(text: str) -> asyncio.Future[list[float]]:
            submitted[text] = loop.time()
            return asyncio.ensure_future(batcher.aembed(text))

        calls = [submit("first")]
        await asyncio.sleep(0.001)  # the first batch is in flight
        for i in range(20):  # trickle in while batches are in flight
            calls.append(submit(f"later {i}"))
            await asyncio.sleep(0.0003)
        await asyncio.gather(*calls)

    on_virtual_clock(trickle())
    waits = {t: inner.dispatched[t] - submitted[t] for t in submitted}
    worst = max(waits.values())
    print(
        f"\n20 trickled calls: batch sizes {inner.batch_sizes}; worst wait before "
        f"dispatch {worst * 1000:.3f} ms (window {window * 1000:.0f} ms)"
    )
    assert inner.batch_sizes[0] == 1 and sum(inner.batch_sizes) == 21
    assert len(inner.batch_sizes) < 15
    assert waits["first"] == 0.0  # it found the embedder idle: dispatched on the next turn
    assert all(w > 0 for t, w in waits.items() if t != "first")  # they waited for company
    assert worst <= window + 1e-9  # and never longer than the window


async def test_real_minilm_batched_equals_single(
    embeddings: SentenceTransformerEmbedder,
) -> None:
    async def batch(texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(embeddings.embed_many, texts)

    batcher = MicroBatcher(embeddings, batch_fn=batch)
    questions = [f"How do I reset the password of account number {i}?" for i in range(32)]
    questions += ["Refund policy?", "What is the refund policy for annual plans, exactly?"]
    batched = await asyncio.gather(*(batcher.aembed(q) for q in questions))
    single = [embeddings.embed(q) for q in questions]
    diff = float(np.max(np.abs(np.array(batched) - np.array(single))))
    print(
        f"\nMiniLM: {len(questions)} texts in {batcher.batches} batch call(s); "
        f"max |batched - single| = {diff:.2e}"
    )
    assert batcher.batches == 1
    assert diff < 1e-5


async def test_document_batch_methods_only_on_request() -> None:
    lc = LangChainLike()
    plain = MicroBatcher(lc)
    assert not plain.batching  # aembed_documents may differ from aembed_query
    await asyncio.gather(*(plain.aembed(f"q{i}") for i in range(8)))
    assert lc.documents_calls == 0 and plain.batches == 0
    opted = MicroBatcher(lc, documents_match_queries=True)
    vecs = await asyncio.gather(*(opted.aembed(f"q{i}") for i in range(8)))
    assert lc.documents_calls == 1
    assert vecs == [lc.embed_query(f"q{i}") for i in range(8)]
    assert find_batch_method(object()) is None


async def test_a_failed_batch_fails_every_caller_and_the_next_one_works() -> None:
    state = {"fail": True}

    async def batch(texts: list[str]) -> list[list[float]]:
        if state["fail"]:
            raise RuntimeError("embedding API down")
        return [[float(len(t))] for t in texts]

    batcher = MicroBatcher(lambda t: [float(len(t))], batch_fn=batch)
    results: list[Any] = await asyncio.gather(
        *(batcher.aembed(f"x{i}") for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    state["fail"] = False
    assert await batcher.aembed("abc") == [3.0]
    with pytest.raises(ValueError):
        MicroBatcher(lambda t: [1.0], window=-1)


def test_sync_calls_pass_through() -> None:
    inner = FakeRemoteEmbedder()
    batcher = MicroBatcher(inner)
    assert batcher.embed("x") == inner.embed("x")
    assert batcher.dims == 16 and batcher.model_id == "fake-remote"


class GatedBatch:
    """An async batch function whose calls wait for ``gate``; records sizes and overlap."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sizes: list[int] = []
        self.active = 0
        self.peak = 0

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.sizes.append(len(texts))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.gate.wait()
        finally:
            self.active -= 1
        return [[float(len(t))] for t in texts]


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_one_in_flight_holds_later_calls_for_one_batch_after() -> None:
    batch = GatedBatch()
    queue = BatchQueue(batch, window=0.0, max_batch=4, max_in_flight=1)
    first = asyncio.ensure_future(queue.submit("a"))
    await _turns()
    assert batch.sizes == [1]  # in flight, held at the gate
    later = [asyncio.ensure_future(queue.submit(f"t{i}")) for i in range(10)]
    await _turns()
    assert batch.sizes == [1]  # nothing else goes while one batch is in flight
    later[3].cancel()  # a queued caller that gives up is not sent
    await _turns()
    batch.gate.set()
    results = await asyncio.gather(first, *later, return_exceptions=True)
    assert batch.peak == 1
    assert batch.sizes == [1, 3, 4, 2]  # max_batch per call, one call at a time
    assert isinstance(results[4], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 4] == [[1.0]] + [[2.0]] * 9
    assert (queue.calls, queue.batches, queue.largest) == (11, 4, 4)


async def test_without_a_limit_calls_during_a_batch_go_out_alongside_it() -> None:
    batch = GatedBatch()
    batcher = MicroBatcher(lambda t: [0.0], batch_fn=batch, window=0.0)
    first = asyncio.ensure_future(batcher.aembed("a"))
    await _turns()
    second = asyncio.ensure_future(batcher.aembed("bb"))
    await _turns()
    assert batch.sizes == [1, 1] and batch.peak == 2  # a remote API takes both at once
    batch.gate.set()
    assert await asyncio.gather(first, second) == [[1.0], [2.0]]
    assert (batcher.calls, batcher.batches) == (2, 2)


async def test_a_wrong_vector_count_fails_the_batch() -> None:
    async def short(texts: list[str]) -> list[list[float]]:
        return [[1.0]]

    batcher = MicroBatcher(lambda t: [1.0], batch_fn=short)
    results = await asyncio.gather(
        batcher.aembed("a"), batcher.aembed("b"), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)
    with pytest.raises(ValueError, match="1 vectors for 2 texts"):
        await batcher.aembed_many(["a", "b"])
    with pytest.raises(ValueError):
        BatchQueue(short, max_in_flight=0)


async def test_real_minilm_aembed_is_one_model_call_for_gathered_callers(
    embeddings: SentenceTransformerEmbedder,
) -> None:
    questions = [f"Where is order number {i}?" for i in range(16)] + ["Where is order number 1?"]
    before = embeddings.batches
    vectors = await asyncio.gather(*(embeddings.aembed(q) for q in questions))
    assert embeddings.batches - before == 1
    single = np.array([embeddings.embed(q) for q in questions])
    assert float(np.max(np.abs(np.array(vectors) - single))) < 1e-5
