"""The LangChain adapter against the real embedded Redis and real MiniLM embeddings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration
from pydantic import BaseModel

from langchain_semcache import SemanticCache, tenant
from semcache_core import CacheEngine
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import CountingEmbeddings

Q = "How do I reset my password?"
PARAPHRASE = "I forgot my password, how can I reset it?"


@pytest.fixture
def cache(make_engine: Callable[..., CacheEngine], embeddings: Any) -> SemanticCache:
    return SemanticCache(engine=make_engine(embedder=embeddings, threshold=0.85))


@pytest.fixture
def global_cache(cache: SemanticCache) -> Iterator[SemanticCache]:
    previous = get_llm_cache()
    set_llm_cache(cache)
    yield cache
    set_llm_cache(previous)


def layer(message: AIMessage) -> str | None:
    marker = message.response_metadata.get("semcache")
    return marker["layer"] if marker else None


def test_exact_hit_does_not_call_the_embedder(
    make_engine: Callable[..., CacheEngine], counting_embeddings: CountingEmbeddings
) -> None:
    writer = SemanticCache(engine=make_engine(embedder=counting_embeddings))
    model = FakeSupportChatModel(cache=writer)
    first = model.invoke(Q)
    # A fresh engine (empty embedding LRU) on the same namespace, told its dims up front.
    reader_embeddings = CountingEmbeddings(counting_embeddings.inner)
    reader = SemanticCache(engine=make_engine(embedder=reader_embeddings, dims=384))
    again = FakeSupportChatModel(cache=reader).invoke(Q)
    assert layer(again) == "exact" and again.content == first.content
    assert reader_embeddings.texts == [] and reader_embeddings.async_texts == []


def test_embedded_text_is_the_last_human_message(
    make_engine: Callable[..., CacheEngine], counting_embeddings: CountingEmbeddings
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=counting_embeddings, dims=384))
    model = FakeSupportChatModel(cache=cache)
    model.invoke([SystemMessage("You are Acme's support bot."), HumanMessage(Q)])
    # embedded once for the lookup, reused (LRU) for the store that follows the miss
    assert counting_embeddings.texts == [Q]
    assert not any("lc" in t or "SystemMessage" in t for t in counting_embeddings.texts)


def test_paraphrase_hits_semantically(global_cache: SemanticCache) -> None:
    model = FakeSupportChatModel()
    first = model.invoke(Q)
    second = model.invoke(PARAPHRASE)
    assert model.calls == 1
    assert second.content == first.content
    marker = second.response_metadata["semcache"]
    assert marker["layer"] == "semantic" and 0.85 <= marker["similarity"] < 1.0


@pytest.mark.parametrize(
    "change",
    ["system", "history", "tools", "model", "temperature"],
)
def test_scope_must_match_exactly(global_cache: SemanticCache, change: str) -> None:
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        return order_id

    base_model = FakeSupportChatModel()
    base = [SystemMessage("You are Acme's support bot."), HumanMessage(Q)]
    base_model.invoke(base)
    assert base_model.calls == 1
    model: Any = base_model
    messages: list[Any] = base
    if change == "system":
        messages = [SystemMessage("You are a pirate."), HumanMessage(Q)]
    elif change == "history":
        messages = [base[0], HumanMessage("hi"), AIMessage("Hello!"), HumanMessage(Q)]
    elif change == "tools":
        model = base_model.bind_tools([lookup_order])
    elif change == "model":
        model = FakeSupportChatModel(model_name="other-model")
    elif change == "temperature":
        model = FakeSupportChatModel(temperature=0.7)
    out = model.invoke(messages)
    assert layer(out) is None, f"served across a different {change}"
    # while the unchanged request still hits
    assert layer(base_model.invoke(base)) == "exact"


def test_two_models_coexist_and_never_serve_each_other(global_cache: SemanticCache) -> None:
    a = FakeSupportChatModel(model_name="model-a")
    b = FakeSupportChatModel(model_name="model-b")
    question = "What is the meaning of this particular invoice line?"
    ans_a = a.invoke(question)
    ans_b = b.invoke(question)
    assert ans_a.content != ans_b.content  # the fake names its model in unknown answers
    assert a.invoke(question).content == ans_a.content
    assert b.invoke(question).content == ans_b.content
    assert (a.calls, b.calls) == (1, 1)
    assert global_cache.engine.count() == 2


def test_temperatures_coexist(global_cache: SemanticCache) -> None:
    cold = FakeSupportChatModel(temperature=0.0)
    warm = FakeSupportChatModel(temperature=0.7)
    question = "Explain our data retention rules in one line"
    c1, w1 = cold.invoke(question), warm.invoke(question)
    assert (cold.calls, warm.calls) == (1, 1)
    assert layer(cold.invoke(question)) == "exact" and layer(warm.invoke(question)) == "exact"
    assert c1.content != w1.content
    assert global_cache.engine.count() == 2


def test_paraphrase_hits_own_model_even_when_other_model_is_nearer(
    global_cache: SemanticCache,
) -> None:
    """langchain-redis asks for the single nearest entry and filters the model after
    it: here model A's entry is identical to the question (similarity 1.0), so that
    design misses model B's own paraphrase entry. The scope is a pre-filter here."""
    a = FakeSupportChatModel(model_name="model-a")
    b = FakeSupportChatModel(model_name="model-b")
    a.invoke(PARAPHRASE)  # A stores the exact paraphrase text
    b.invoke(Q)  # B stores the canonical question
    served = b.invoke(PARAPHRASE)
    assert layer(served) == "semantic"
    assert served.response_metadata["semcache"]["similarity"] < 0.999
    assert served.response_metadata["model_name"] == "model-b"
    assert b.calls == 1


def test_rich_generation_round_trips_through_redis(cache: SemanticCache) -> None:
    gen = ChatGeneration(
        message=AIMessage(
            content="Checking order 42.",
            tool_calls=[{"name": "lookup_order", "args": {"order_id": "42"}, "id": "c1"}],
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            response_metadata={"model_name": "m", "finish_reason": "tool_calls"},
        )
    )
    cache.update("prompt text", "llm-string", [gen])
    [back] = cache.lookup("prompt text", "llm-string")  # type: ignore[misc]
    assert isinstance(back, ChatGeneration)
    msg = back.message
    assert isinstance(msg, AIMessage)
    assert msg.content == gen.message.content
    assert msg.tool_calls == gen.message.tool_calls  # type: ignore[attr-defined]
    assert msg.usage_metadata == gen.message.usage_metadata  # type: ignore[attr-defined]
    assert {k: v for k, v in msg.response_metadata.items() if k != "semcache"} == {
        "model_name": "m",
        "finish_reason": "tool_calls",
    }
    assert msg.response_metadata["semcache"]["layer"] == "exact"


def test_bind_tools_calls_are_cached_and_replayed(global_cache: SemanticCache) -> None:
    def lookup_order(order_id: str) -> str:
        """Look up an order by id."""
        return order_id

    model = FakeSupportChatModel()
    bound = model.bind_tools([lookup_order])
    first = bound.invoke("Where is order 42?")
    second = bound.invoke("Where is order 42?")
    assert model.calls == 1
    assert second.tool_calls == first.tool_calls and second.tool_calls[0]["name"] == "lookup_order"
    assert layer(second) == "exact"


def test_structured_output_json_schema_is_cached_and_revalidated(
    global_cache: SemanticCache,
) -> None:
    class Answer(BaseModel):
        answer: str
        confidence: float

    model = FakeSupportChatModel()
    structured = model.with_structured_output(Answer, method="json_schema")
    first = structured.invoke(Q)
    second = structured.invoke(Q)
    third = structured.invoke(PARAPHRASE)
    assert model.calls == 1
    assert isinstance(second, Answer) and second == first and third == first
    # the plain model asked the same question is a different scope (no response_format)
    model.invoke(Q)
    assert model.calls == 2


def test_legacy_llm_string_prompts(global_cache: SemanticCache) -> None:
    llm = FakeListLLM(responses=["Go to Settings > Security.", "SECOND CALL"])
    assert llm.invoke(Q) == "Go to Settings > Security."
    assert llm.invoke(Q) == "Go to Settings > Security."  # exact
    assert llm.invoke(PARAPHRASE) == "Go to Settings > Security."  # semantic
    assert llm.i == 1  # FakeListLLM advanced once: one real call


def test_tenants_through_langchain(global_cache: SemanticCache) -> None:
    model = FakeSupportChatModel()
    with tenant("acme"):
        model.invoke(Q)
    with tenant("globex"):
        out = model.invoke(Q)
    assert layer(out) is None and model.calls == 2
    with tenant("acme"):
        assert layer(model.invoke(PARAPHRASE)) == "semantic"
    fixed = SemanticCache(engine=global_cache.engine, tenant="globex")
    assert layer(FakeSupportChatModel(cache=fixed).invoke(Q)) == "exact"
    assert global_cache.engine.count(tenant="acme") == 1


def test_clear_scoped_to_the_cache_tenant(global_cache: SemanticCache) -> None:
    model = FakeSupportChatModel()
    for t in ("acme", "globex"):
        with tenant(t):
            model.invoke(Q)
    SemanticCache(engine=global_cache.engine, tenant="acme").clear()
    assert global_cache.engine.count(tenant="acme") == 0
    assert global_cache.engine.count(tenant="globex") == 1
    global_cache.clear()
    assert global_cache.engine.count() == 0
