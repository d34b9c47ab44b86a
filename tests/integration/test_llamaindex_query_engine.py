"""`SemanticCacheQueryEngine` / `SemanticCacheRetriever` against the embedded Redis with
the real all-MiniLM-L6-v2: paraphrases hit with their sources, index versions and
tenants never share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import RESPONSE_TYPE, Response
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llamaindex_semcache.query_engine import (
    SemanticCacheQueryEngine,
    SemanticCacheRetriever,
)
from semcache_core import CacheEngine, ConfigurationError, tenant
from semcache_core.embedding import SentenceTransformerEmbedder

DOCS = [
    Document(
        text="Shipping to Europe takes five to seven business days.",
        id_="shipping",
        metadata={"section": "logistics", "page": 3},
    ),
    Document(
        text="Passwords can be reset from the account settings page.",
        id_="accounts",
        metadata={"section": "accounts", "page": 7},
    ),
]
SHIPPING = "How long does shipping to Europe take?"
SHIPPING_PARAPHRASE = "How many days does delivery to Europe take?"


class CountingQueryEngine(BaseQueryEngine):
    """Answers from a real index retriever; counts the calls that reach it."""

    def __init__(self, retriever: BaseRetriever) -> None:
        super().__init__(callback_manager=None)
        self.retriever = retriever
        self.calls: list[str] = []

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        self.calls.append(query_bundle.query_str)
        nodes = self.retriever.retrieve(query_bundle)
        top = nodes[0].node.get_content()
        return Response(
            response=f"Answer #{len(self.calls)}: {top}",
            source_nodes=nodes,
            metadata={"answered_by": "counting", "not_json": object()},
        )

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return self._query(query_bundle)


class CountingRetriever(BaseRetriever):
    def __init__(self, inner: BaseRetriever) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        self.calls += 1
        return self.inner.retrieve(query_bundle)


@pytest.fixture
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(DOCS, embed_model=MockEmbedding(embed_dim=8))


@pytest.fixture
def inner(index: VectorStoreIndex) -> CountingQueryEngine:
    return CountingQueryEngine(index.as_retriever(similarity_top_k=2))


@pytest.fixture
def engine(
    make_engine: Callable[..., CacheEngine], embeddings: SentenceTransformerEmbedder
) -> CacheEngine:
    return make_engine(embedder=embeddings, threshold=0.8)


def _sources(response: Any) -> list[tuple[str, str, float | None, dict[str, Any], str | None]]:
    return [
        (
            n.node.node_id,
            n.node.get_content(),
            n.score,
            {k: v for k, v in n.node.metadata.items()},
            n.node.source_node.node_id if n.node.source_node else None,
        )
        for n in response.source_nodes
    ]


def test_paraphrase_hit_returns_answer_with_sources(
    inner: CountingQueryEngine, engine: CacheEngine
) -> None:
    cached = SemanticCacheQueryEngine(inner, index_version="v1", engine=engine)
    first = cached.query(SHIPPING)
    assert isinstance(first, Response)
    assert inner.calls == [SHIPPING]
    assert "semcache" not in (first.metadata or {})

    hit = cached.query(SHIPPING_PARAPHRASE)
    assert inner.calls == [SHIPPING]  # served from the cache
    assert isinstance(hit, Response)
    assert hit.response == first.response
    assert _sources(hit) == _sources(first)
    assert all(isinstance(n.node, TextNode) for n in hit.source_nodes)
    assert {n.node.source_node.node_id for n in hit.source_nodes if n.node.source_node} == {
        "shipping",
        "accounts",
    }
    assert hit.metadata is not None
    marker = hit.metadata["semcache"]
    assert marker["hit"] is True and marker["layer"] == "semantic"
    assert 0.8 <= marker["similarity"] < 1.0
    assert hit.metadata["answered_by"] == "counting"
    assert "not_json" not in hit.metadata  # only data is stored

    exact = cached.query(SHIPPING)
    assert exact.metadata is not None and exact.metadata["semcache"]["layer"] == "exact"

    unrelated = cached.query("How do I reset my password?")
    assert len(inner.calls) == 2 and str(unrelated) != str(first)


async def test_async_query_shares_entries(inner: CountingQueryEngine, engine: CacheEngine) -> None:
    cached = SemanticCacheQueryEngine(inner, index_version="v1", engine=engine)
    first = await cached.aquery(SHIPPING)
    hit = await cached.aquery(SHIPPING_PARAPHRASE)
    sync_hit = cached.query(SHIPPING_PARAPHRASE)
    assert inner.calls == [SHIPPING]
    assert str(hit) == str(first) == str(sync_hit)
    assert _sources(hit) == _sources(first)


def test_index_versions_never_share(inner: CountingQueryEngine, engine: CacheEngine) -> None:
    v1 = SemanticCacheQueryEngine(inner, index_version="v1", engine=engine)
    v2 = SemanticCacheQueryEngine(inner, index_version="v2", engine=engine)
    v1.query(SHIPPING)
    second = v2.query(SHIPPING)
    assert inner.calls == [SHIPPING, SHIPPING]
    assert "semcache" not in (second.metadata or {})
    v2.query(SHIPPING)
    assert len(inner.calls) == 2

    assert v1.invalidate() == 1  # only v1's entry
    v1.query(SHIPPING)
    v2.query(SHIPPING)
    assert len(inner.calls) == 3


def test_tenant_isolation(inner: CountingQueryEngine, engine: CacheEngine) -> None:
    cached = SemanticCacheQueryEngine(inner, index_version="v1", engine=engine)
    with tenant("acme"):
        acme = cached.query(SHIPPING)
    with tenant("globex"):
        globex = cached.query(SHIPPING)
        cached.query(SHIPPING_PARAPHRASE)
    assert len(inner.calls) == 2 and str(acme) != str(globex)
    with tenant("acme"):
        again = cached.query(SHIPPING_PARAPHRASE)
    assert len(inner.calls) == 2 and str(again) == str(acme)

    pinned = SemanticCacheQueryEngine(inner, index_version="v1", engine=engine, tenant="acme")
    with tenant("globex"):
        assert str(pinned.query(SHIPPING)) == str(acme)
    assert len(inner.calls) == 2


def test_streaming_and_empty_answers_are_not_stored(
    index: VectorStoreIndex, engine: CacheEngine
) -> None:
    class EmptyEngine(CountingQueryEngine):
        def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
            self.calls.append(query_bundle.query_str)
            return Response(response="Empty Response")

    empty = EmptyEngine(index.as_retriever())
    cached = SemanticCacheQueryEngine(empty, index_version="v1", engine=engine)
    cached.query(SHIPPING)
    cached.query(SHIPPING)
    assert len(empty.calls) == 2


def test_retriever_twin(index: VectorStoreIndex, engine: CacheEngine) -> None:
    inner = CountingRetriever(index.as_retriever(similarity_top_k=2))
    cached = SemanticCacheRetriever(inner, index_version="v1", engine=engine)
    first = cached.retrieve(SHIPPING)
    hit = cached.retrieve(SHIPPING_PARAPHRASE)
    assert inner.calls == 1
    assert [(n.node.node_id, n.node.get_content(), n.score) for n in hit] == [
        (n.node.node_id, n.node.get_content(), n.score) for n in first
    ]
    other = SemanticCacheRetriever(inner, index_version="v2", engine=engine)
    other.retrieve(SHIPPING)
    assert inner.calls == 2


async def test_retriever_async(index: VectorStoreIndex, engine: CacheEngine) -> None:
    inner = CountingRetriever(index.as_retriever(similarity_top_k=2))
    cached = SemanticCacheRetriever(inner, index_version="v1", engine=engine)
    first = await cached.aretrieve(SHIPPING)
    hit = await cached.aretrieve(SHIPPING_PARAPHRASE)
    assert inner.calls == 1
    assert [n.node.node_id for n in hit] == [n.node.node_id for n in first]


def test_bad_arguments(inner: CountingQueryEngine, engine: CacheEngine) -> None:
    with pytest.raises(ConfigurationError, match="index_version"):
        SemanticCacheQueryEngine(inner, index_version="", engine=engine)
    with pytest.raises(ConfigurationError, match="not both"):
        SemanticCacheQueryEngine(inner, index_version="v1", engine=engine, threshold=0.5)
