"""Verified semantic hits through LangChain, on the real Redis with the real MiniLM.

Each near-miss here was served by similarity alone (most at 0.98 or more) before every
semantic candidate had to pass the verifier; each must now be refused (``guarded``),
while a true rewording still hits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.globals import set_llm_cache
from langchain_core.messages import HumanMessage

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, LookupResult, Outcome, cache_context, last_lookup, tenant
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.integration.drivers import DrivenEngine, Driver

CORPUS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "corpus").glob("*.jsonl"))

# (cached request, new request): a wrong answer if served.
NEAR_MISSES = [
    ("Extract the appointment date: 04/05/2024", "Extract the appointment date: 05/04/2024"),
    ("What is the total of invoice #7781?", "What is the total of invoice #7787?"),
    ("Whose phone number ends in 0142?", "Whose phone number ends in 0124?"),
    ("Write a migration to rename user_id to account_id",
     "Write a migration to rename account_id to user_id"),
    ("Find me flights from Boston to Denver", "Find me flights from Denver to Boston"),
    ("The patient is 67. Is 5 mg of warfarin safe?",
     "The patient is 76. Is 5 mg of warfarin safe?"),
    ("Does the contract end in 2025?", "Does the contract end in 2026?"),
    ("Is it safe to drink alcohol with ibuprofen?",
     "Is it not safe to drink alcohol with ibuprofen?"),
    ("Should I stretch before running?", "Should I stretch after running?"),
]  # fmt: skip


class RecordingCache(SemanticCache):
    """Keeps every lookup's `LookupResult`. After ``ainvoke`` the caller's `last_lookup`
    does not see the lookup: LangChain's ``agenerate`` makes it in a child task
    (``asyncio.gather``), whose context never comes back to the caller."""

    def __init__(self, engine: CacheEngine) -> None:
        super().__init__(engine=engine)
        self.results: list[LookupResult | None] = []

    def lookup(self, prompt: str, llm_string: str) -> Any:
        found = super().lookup(prompt, llm_string)
        self.results.append(last_lookup())
        return found

    async def alookup(self, prompt: str, llm_string: str) -> Any:
        found = await super().alookup(prompt, llm_string)
        self.results.append(last_lookup())
        return found


class Chat:
    """A fake chat model behind a `RecordingCache` (set as LangChain's cache until
    `close`), invoked on the test's driver: ``invoke`` or ``ainvoke``, so LangChain's
    sync or async cache calls, so the engine's sync or async driver."""

    def __init__(self, driver: Driver, engine: DrivenEngine) -> None:
        self.driver, self.model = driver, FakeSupportChatModel()
        self.cache = RecordingCache(engine.engine)
        set_llm_cache(self.cache)

    def invoke(self, prompt: Any) -> Any:
        return self.driver.run(self.model.invoke, self.model.ainvoke, prompt)

    def last_lookup(self) -> LookupResult | None:
        return self.cache.results[-1] if self.cache.results else None

    @property
    def calls(self) -> int:
        return self.model.calls

    def close(self) -> None:
        set_llm_cache(None)


@pytest.fixture
def chat(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> Iterator[tuple[DrivenEngine, Chat]]:
    engine = driver.make(make_engine, embedder=embeddings)
    chat = Chat(driver, engine)
    try:
        yield engine, chat
    finally:
        chat.close()


@pytest.fixture
def low_threshold_chat(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> Iterator[tuple[DrivenEngine, Chat]]:
    """At 0.85, under the default, so similarity alone would serve every near-miss below
    and only the verifier stands in the way."""
    engine = driver.make(make_engine, embedder=embeddings, threshold=0.85)
    chat = Chat(driver, engine)
    try:
        yield engine, chat
    finally:
        chat.close()


@pytest.mark.parametrize(("cached", "asked"), NEAR_MISSES)
def test_near_misses_are_guarded_not_served(
    low_threshold_chat: tuple[DrivenEngine, Chat], cached: str, asked: str
) -> None:
    engine, model = low_threshold_chat
    with tenant("acme"):
        first = model.invoke(cached).content
        second = model.invoke(asked).content
    assert second != first
    assert model.calls == 2
    result = model.last_lookup()
    assert result is not None and result.outcome == Outcome.GUARDED, result
    assert result.similarity is not None and result.similarity >= engine.config.threshold
    assert engine.stats("acme")["tenants"]["acme"]["guarded"] == 1


def test_a_rewording_still_hits(chat: tuple[DrivenEngine, Chat]) -> None:
    _, model = chat
    with tenant("acme"):
        first = model.invoke("How do I reset my password?").content
        again = model.invoke("how can I reset my password").content
    assert again == first and model.calls == 1
    result = model.last_lookup()
    assert result is not None and result.outcome == Outcome.SEMANTIC_HIT


def test_a_long_rag_prompt_never_hits_from_a_cut_off_embedding(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> None:
    """MiniLM reads 256 tokens: with ~400 tokens of context first, every question embeds
    the same. Such prompts are exact-only, even at threshold=1.0."""
    context = " ".join(
        f"Section {i}: refunds are issued within 14 days to the original payment method."
        for i in range(30)
    )
    for threshold in (0.9, 1.0):
        engine = driver.make(make_engine, embedder=embeddings, threshold=threshold)
        model = Chat(driver, engine)
        try:
            with tenant(f"acme-{threshold}"):
                a = f"Context:\n{context}\n\nQuestion: How long do refunds take?"
                b = f"Context:\n{context}\n\nQuestion: Can I get a refund in cash?"
                first = model.invoke([HumanMessage(a)]).content
                assert model.invoke([HumanMessage(b)]).content != first
                assert model.calls == 2
                result = model.last_lookup()
                assert result is not None and result.outcome == Outcome.MISS
                assert result.similarity is None  # never embedded
                assert model.invoke([HumanMessage(a)]).content == first  # exact still hits
                assert model.calls == 2
        finally:
            model.close()


def test_threshold_one_serves_identical_questions_only(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=embeddings, threshold=1.0)
    req = engine.request("Where is my order?", scope={"m": 1}, tenant="acme")
    engine.store(req, b"answer")
    twin = engine.request("Where is my order? ", scope={"m": 1}, tenant="acme")
    assert engine.lookup(twin).outcome == Outcome.SEMANTIC_HIT  # same words
    other = engine.request("Where is my order ?!", scope={"m": 1}, tenant="acme")
    assert engine.lookup(other).outcome in (Outcome.GUARDED, Outcome.MISS)


def test_semantic_false_and_exact_only_kinds(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=embeddings, exact_only_kinds=("structured",))
    stored = engine.request("How do I reset my password?", tenant="acme")
    engine.store(stored, b"answer")
    reworded = "how can I reset my password"
    with cache_context(semantic=False):
        off = engine.request(reworded, tenant="acme")
    assert off.question is None and engine.lookup(off).outcome == Outcome.MISS
    structured = engine.request(reworded, tenant="acme", kind="structured")
    assert engine.lookup(structured).outcome == Outcome.MISS
    assert engine.lookup(engine.request(reworded, tenant="acme")).hit


def test_declared_question_embeds_only_the_users_text(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=embeddings)
    template = "You are a support bot for ACME. Answer briefly and politely.\n\nCustomer: {}"
    with cache_context(question="How do I reset my password?"):
        stored = engine.request(template.format("How do I reset my password?"), tenant="acme")
    assert stored.question == "How do I reset my password?"
    engine.store(stored, b"answer")
    with cache_context(question="how can I reset my password"):
        asked = engine.request(template.format("how can I reset my password"), tenant="acme")
    assert engine.lookup(asked).hit
    other = "You are a support bot for GLOBEX. Answer briefly.\n\nCustomer: {}"
    with cache_context(question="how can I reset my password"):
        elsewhere = engine.request(other.format("how can I reset my password"), tenant="acme")
    assert engine.lookup(elsewhere).outcome == Outcome.MISS  # another template: another scope


def test_an_async_verifier_is_awaited(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    """Async only: the sync driver cannot await an async verifier (it refuses it)."""
    import asyncio

    seen: list[tuple[str, str]] = []

    async def judge(query: str, candidate: str) -> bool:
        seen.append((query, candidate))
        await asyncio.sleep(0)
        return True

    engine = make_engine(embedder=embeddings, verifier=judge)

    async def run() -> Outcome:
        await engine.astore(engine.request("Where is my parcel?", tenant="a"), b"x")
        result = await engine.alookup(engine.request("where's my parcel", tenant="a"))
        return result.outcome

    assert asyncio.run(run()) == Outcome.SEMANTIC_HIT
    assert seen == [("where's my parcel", "Where is my parcel?")]


def _corpus() -> list[dict[str, Any]]:
    rows = [json.loads(line) for path in CORPUS for line in path.read_text().splitlines()]
    return [r for r in rows if r["kind"] == "near_miss" and r["shape"] in ("plain", "chat")]


def test_corpus_near_misses_are_not_served(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> None:
    """The hand-written near-misses (plain and chat shapes, benchmarks/corpus): at the
    default threshold, at most 1 % are served (benchmarks/safety.py has every shape)."""
    from langchain_core.messages import AIMessage

    engine = driver.make(make_engine, embedder=embeddings)
    model = Chat(driver, engine)
    rows = _corpus()
    served = []
    try:
        for row in rows:
            with tenant(row["id"]):
                for side in ("a", "b"):
                    history = row.get(f"history_{side}") or []
                    messages: list[Any] = [
                        HumanMessage(t["content"])
                        if t["role"] == "user"
                        else AIMessage(t["content"])
                        for t in history
                    ]
                    model.invoke([*messages, HumanMessage(row[side])])
                if (result := model.last_lookup()) is not None and result.hit:
                    served.append(row["id"])
    finally:
        model.close()
    assert len(rows) >= 150
    assert len(served) <= 0.01 * len(rows), served


def test_guarded_lookups_reach_prometheus(
    make_engine: Callable[..., CacheEngine], embeddings: Any, driver: Driver
) -> None:
    from prometheus_client import CollectorRegistry

    from semcache_core import PrometheusMetrics

    registry = CollectorRegistry()
    engine = driver.make(make_engine, embedder=embeddings, metrics=PrometheusMetrics(registry))
    engine.store(engine.request("Flights from Boston to Denver", tenant="t"), b"x")
    result = engine.lookup(engine.request("Flights from Denver to Boston", tenant="t"))
    assert result.outcome == Outcome.GUARDED and result.guard == "order"
    labels = {"namespace": engine.config.namespace, "layer": "semantic", "outcome": "guarded"}
    assert registry.get_sample_value("semcache_requests_total", labels) == 1.0
