"""The tenant of a LlamaIndex call from the ``semcache_tenant`` instrumentation tag, with
no ``with tenant()`` block: through a query engine, `SemanticCacheQueryEngine` and a
``FunctionAgent``, zero answers cross tenants. Embedded Redis, real MiniLM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.tools import FunctionTool

from llamaindex_semcache import (
    TENANT_TAG,
    CachedEmbedding,
    SemanticCacheQueryEngine,
    instrument_tenant,
    wrap,
)
from semcache_core import CacheEngine, ConfigurationError, tenant
from semcache_demo.llamaindex_fakes import FakeFunctionCallingLLM, FakeLLM
from tests.integration.test_llamaindex_llm import Recorder
from tests.integration.test_llamaindex_query_engine import CountingQueryEngine

Q = "How do I reset my password?"
PARAPHRASE = "I forgot my password, how can I reset it?"
DOCS = ["Passwords are reset from Settings > Security.", "We accept Visa and PayPal."]
TENANTS = ("acme", "globex")


@pytest.fixture
def engine(make_engine: Callable[..., CacheEngine], embeddings: Any) -> CacheEngine:
    return make_engine(embedder=embeddings, threshold=0.8)


def _served_tenants(recorder: Recorder) -> list[tuple[str, str]]:
    """(the tag in force, the tenant searched) for every hit; they must agree."""
    return [(str(e.tags.get(TENANT_TAG)), e.tenant) for e in recorder.hits()]


def test_query_engine_tenant_from_the_tag(
    engine: CacheEngine, settings: None, recorder: Recorder
) -> None:
    fake = FakeLLM()
    Settings.llm = wrap(fake, engine)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    query_engine = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS]
    ).as_query_engine()

    answers: dict[str, str] = {}
    for name in TENANTS:
        with instrument_tags({TENANT_TAG: name}):
            answers[name] = str(query_engine.query(Q))
    assert fake.calls == 2  # globex never got acme's answer
    for name in TENANTS:
        with instrument_tenant(name):
            assert str(query_engine.query(PARAPHRASE)) == answers[name]
    assert fake.calls == 2  # each tenant served from its own entry
    hits = _served_tenants(recorder)
    assert len(hits) == 2 and all(tag == searched for tag, searched in hits)
    with instrument_tenant("initech"):
        query_engine.query(Q)
    assert fake.calls == 3


def test_semantic_cache_query_engine_tenant_from_the_tag(engine: CacheEngine) -> None:
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=MockEmbedding(embed_dim=8)
    )
    inner = CountingQueryEngine(index.as_retriever())
    cached = SemanticCacheQueryEngine(inner, index_version="v1", engine=engine)
    for name in TENANTS:
        with instrument_tenant(name):
            cached.query(Q)
    assert len(inner.calls) == 2
    for name in TENANTS:
        with instrument_tenant(name):
            response = cached.query(PARAPHRASE)
        assert response.metadata is not None and response.metadata["semcache"]["hit"]
    assert len(inner.calls) == 2


@pytest.mark.parametrize("streaming", [False, True])
async def test_function_agent_tenant_from_the_tag(
    engine: CacheEngine, recorder: Recorder, streaming: bool
) -> None:
    def order_status(order_id: str) -> str:
        """The status of an order."""
        return f"order {order_id} shipped"

    def refund_policy(topic: str) -> str:
        """The refund policy."""
        return "30 days"

    fake = FakeFunctionCallingLLM()
    agent = FunctionAgent(
        tools=[
            FunctionTool.from_defaults(fn=order_status),
            FunctionTool.from_defaults(fn=refund_policy),
        ],
        llm=wrap(fake, engine),
        streaming=streaming,
    )
    question = "Where is my order 42?"
    answers: dict[str, str] = {}
    for name in TENANTS:
        with instrument_tenant(name):
            handler = agent.run(user_msg=question)
        answers[name] = str(await handler)  # awaited outside: the run keeps its tag
    assert fake.calls == 4  # two steps each; no tenant saw the other's
    assert recorder.hits() == []
    for name in TENANTS:
        with instrument_tenant(name):
            assert str(await agent.run(user_msg=question)) == answers[name]
    assert fake.calls == 4  # the second runs came from each tenant's own entries
    hits = _served_tenants(recorder)
    assert len(hits) == 4 and all(tag == searched for tag, searched in hits)


def test_fixed_tenant_wins_and_the_context_must_agree(engine: CacheEngine) -> None:
    fake = FakeLLM()
    pinned = wrap(fake, engine, tenant="acme")
    with instrument_tenant("globex"):
        pinned.complete(Q)
    with tenant("acme"):
        pinned.complete(Q)
    assert fake.calls == 1  # both were acme's

    free = wrap(FakeLLM(), engine)
    with tenant("acme"), instrument_tenant("acme"):
        free.complete(Q)  # agreeing is fine
    with (
        tenant("acme"),
        instrument_tenant("globex"),
        pytest.raises(ConfigurationError, match="set one of them"),
    ):
        free.complete(Q)


@pytest.mark.parametrize("bad", ["", 42, None, ["acme"]])
def test_invalid_tenant_tags_raise(engine: CacheEngine, bad: object) -> None:
    llm = wrap(FakeLLM(), engine)
    cached = SemanticCacheQueryEngine(
        CountingQueryEngine(retriever=None),  # type: ignore[arg-type]
        index_version="v1",
        engine=engine,
    )
    with instrument_tags({TENANT_TAG: bad}):
        with pytest.raises(ConfigurationError, match="non-empty string"):
            llm.complete(Q)
        with pytest.raises(ConfigurationError, match="non-empty string"):
            cached.query(Q)
    with pytest.raises(ConfigurationError, match="non-empty string"):
        instrument_tenant(bad).__enter__()  # type: ignore[arg-type]


def test_instrument_tenant_keeps_other_tags() -> None:
    from llama_index_instrumentation.dispatcher import active_instrument_tags

    with instrument_tags({"request_id": "r1"}), instrument_tenant("acme"):
        assert active_instrument_tags.get() == {"request_id": "r1", TENANT_TAG: "acme"}


def test_per_tenant_embeddings_follow_the_tag(redis_url: str, namespace: str) -> None:
    cached = CachedEmbedding(
        MockEmbedding(embed_dim=8), redis_url=redis_url, namespace=namespace, per_tenant=True
    )
    try:
        with instrument_tenant("acme"):
            cached.get_text_embedding("hello")
        with instrument_tenant("globex"):
            cached.get_text_embedding("hello")
        assert cached.store.stats()["misses"] == 2  # one entry per tenant
        with instrument_tenant("acme"):
            cached.get_text_embedding("hello")
        assert cached.store.stats()["hits"] == 1
    finally:
        cached.store.clear()
        cached.store.close()
