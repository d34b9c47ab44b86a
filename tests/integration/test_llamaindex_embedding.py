"""`CachedEmbedding` against the embedded Redis: each text embedded once per model and
kind, batches fetched in one round trip, TTL, fail-open and tenancy."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from llamaindex_semcache.embedding import CachedEmbedding
from semcache_core import CacheEngine, tenant
from semcache_core.embedding_store import EmbeddingStore

DIMS = 8


def _vector(seed_text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")
    return [float(x) for x in np.random.default_rng(seed).standard_normal(DIMS)]


class CountingEmbedding(BaseEmbedding):
    """Deterministic vectors that differ by model and by query versus text; records
    every call that reached it."""

    _queries: list[str] = PrivateAttr(default_factory=list)
    _texts: list[str] = PrivateAttr(default_factory=list)
    _batches: list[list[str]] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "CountingEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        self._queries.append(query)
        return _vector(f"{self.model_name}|query|{query}")

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        self._texts.append(text)
        return _vector(f"{self.model_name}|text|{text}")

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self._batches.append(list(texts))
        return [_vector(f"{self.model_name}|text|{t}") for t in texts]

    @property
    def embedded(self) -> list[str]:
        """Every text embedded as a document, single or batched."""
        return self._texts + [t for batch in self._batches for t in batch]


DOCS = [
    "Refunds are issued within 30 days of purchase.",
    "Passwords can be reset from the account settings page.",
    "Shipping to Europe takes five to seven business days.",
    "Support is available around the clock by chat.",
]


@pytest.fixture
def make_cached(redis_url: str, namespace: str) -> Iterator[Callable[..., CachedEmbedding]]:
    made: list[CachedEmbedding] = []

    def _make(inner: BaseEmbedding, **kwargs: Any) -> CachedEmbedding:
        kwargs.setdefault("redis_url", redis_url)
        kwargs.setdefault("namespace", namespace)
        cached = CachedEmbedding(inner, **kwargs)
        made.append(cached)
        return cached

    yield _make
    cleaner = EmbeddingStore(redis_url=redis_url, namespace=namespace)
    cleaner.clear()
    cleaner.close()
    for cached in made:
        cached.store.close()


def _documents() -> list[Document]:
    return [Document(text=t, id_=f"doc-{i}") for i, t in enumerate(DOCS)]


def _stored_vectors(index: VectorStoreIndex) -> list[list[float]]:
    data = index.vector_store.to_dict()["embedding_dict"]
    return sorted(data.values())


def test_index_built_twice_embeds_each_text_once(
    make_cached: Callable[..., CachedEmbedding],
) -> None:
    inner = CountingEmbedding(model_name="m1", embed_batch_size=100)
    cached = make_cached(inner)
    first = VectorStoreIndex.from_documents(_documents(), embed_model=cached)
    assert sorted(inner.embedded) == sorted(DOCS)
    assert len(inner._batches) == 1  # one inner batch call for all the misses

    second = VectorStoreIndex.from_documents(_documents(), embed_model=cached)
    assert sorted(inner.embedded) == sorted(DOCS)  # nothing embedded again
    assert _stored_vectors(first) == _stored_vectors(second)

    fresh = make_cached(CountingEmbedding(model_name="m1"))  # another process, same Redis
    third = VectorStoreIndex.from_documents(_documents(), embed_model=fresh)
    assert fresh.embed_model.embedded == []  # type: ignore[attr-defined]
    assert _stored_vectors(third) == _stored_vectors(first)


def test_ingestion_pipeline_twice_and_settings(
    make_cached: Callable[..., CachedEmbedding],
) -> None:
    inner = CountingEmbedding(model_name="m1", embed_batch_size=100)
    cached = make_cached(inner)
    for _ in range(2):
        pipeline = IngestionPipeline(transformations=[SentenceSplitter(), cached])
        nodes = pipeline.run(documents=_documents())
        assert len(nodes) == len(DOCS)
        assert all(n.embedding is not None and len(n.embedding) == DIMS for n in nodes)
    assert sorted(inner.embedded) == sorted(DOCS)

    previous = Settings._embed_model
    try:
        Settings.embed_model = cached
        assert Settings.embed_model is cached
        VectorStoreIndex.from_documents(_documents())
        retriever = VectorStoreIndex.from_documents(_documents()).as_retriever()
        retriever.retrieve("How do refunds work?")
        retriever.retrieve("How do refunds work?")
    finally:
        Settings._embed_model = previous
    assert sorted(inner.embedded) == sorted(DOCS)
    assert inner._queries == ["How do refunds work?"]


def test_models_never_share_vectors(
    make_cached: Callable[..., CachedEmbedding], raw_redis: redis.Redis
) -> None:
    one, two = CountingEmbedding(model_name="m1"), CountingEmbedding(model_name="m2")
    cached_one, cached_two = make_cached(one), make_cached(two)
    v1 = cached_one.get_text_embedding("same text")
    v2 = cached_two.get_text_embedding("same text")
    assert not np.allclose(v1, v2)
    assert one.embedded == ["same text"] and two.embedded == ["same text"]
    assert cached_one.get_text_embedding("same text") == v1
    assert cached_two.get_text_embedding("same text") == v2
    assert one.embedded == ["same text"] and two.embedded == ["same text"]
    assert len(list(raw_redis.scan_iter(match=cached_one.store.pattern()))) == 2
    assert cached_one.store.clear(model=cached_one.model_id) == 1
    assert cached_two.get_text_embedding("same text") == v2  # the other model's survived


def test_query_and_text_never_share_keys(make_cached: Callable[..., CachedEmbedding]) -> None:
    inner = CountingEmbedding(model_name="m1")
    cached = make_cached(inner)
    text_vec = cached.get_text_embedding("what is the refund policy")
    query_vec = cached.get_query_embedding("what is the refund policy")
    assert not np.allclose(text_vec, query_vec)
    assert inner._queries == ["what is the refund policy"]
    assert np.allclose(query_vec, _vector("m1|query|what is the refund policy"), atol=1e-6)
    assert cached.get_query_embedding("what is the refund policy") == query_vec
    assert cached.get_text_embedding("what is the refund policy") == text_vec
    assert len(inner._queries) == 1 and len(inner.embedded) == 1
    store = cached.store
    assert store.key(cached.model_id, "query", "x") != store.key(cached.model_id, "text", "x")


def test_batch_embeds_only_misses_in_one_call(
    make_cached: Callable[..., CachedEmbedding],
) -> None:
    inner = CountingEmbedding(model_name="m1", embed_batch_size=100)
    cached = make_cached(inner)
    primed = cached.get_text_embedding("b")
    out = cached.get_text_embedding_batch(["a", "b", "c", "a"])
    assert inner._batches == [["a", "c"]]  # each distinct miss once, in one call
    assert out[1] == primed and out[0] == out[3]
    assert np.allclose(out[2], _vector("m1|text|c"), atol=1e-6)
    again = cached._get_text_embeddings(["c", "a", "b"])
    assert inner._batches == [["a", "c"]]
    assert again == [out[2], out[0], out[1]]
    stats = cached.store.stats()
    assert stats["writes"] == 3 and stats["errors"] == 0


async def test_async_paths_share_entries(make_cached: Callable[..., CachedEmbedding]) -> None:
    inner = CountingEmbedding(model_name="m1", embed_batch_size=100)
    cached = make_cached(inner)
    sync_vecs = cached.get_text_embedding_batch(["a", "b"])
    async_vecs = await cached.aget_text_embedding_batch(["a", "b", "c"])
    assert async_vecs[:2] == sync_vecs
    assert inner._batches == [["a", "b"]]  # the async batch went to the inner sync batch
    assert inner._texts == ["c"] or inner.embedded.count("c") == 1
    query = await cached.aget_query_embedding("q")
    assert await cached.aget_query_embedding("q") == query == cached.get_query_embedding("q")
    assert inner._queries == ["q"]
    assert await cached.aget_text_embedding("a") == sync_vecs[0]


def test_ttl_is_set_on_keys(
    make_cached: Callable[..., CachedEmbedding], raw_redis: redis.Redis
) -> None:
    cached = make_cached(CountingEmbedding(model_name="m1"), ttl=60)
    cached.get_text_embedding("short lived")
    key = cached.store.key(cached.model_id, "text", "short lived")
    assert 0 < raw_redis.pttl(key) <= 60_000

    forever = make_cached(CountingEmbedding(model_name="m2"), ttl=None)
    forever.get_text_embedding("kept")
    assert raw_redis.pttl(forever.store.key(forever.model_id, "text", "kept")) == -1

    inner = CountingEmbedding(model_name="m3")
    read_only = make_cached(inner, ttl=0)
    read_only.get_text_embedding("not kept")
    read_only.get_text_embedding("not kept")
    assert inner.embedded == ["not kept", "not kept"]
    assert not raw_redis.exists(read_only.store.key(read_only.model_id, "text", "not kept"))


async def test_redis_down_still_embeds(make_cached: Callable[..., CachedEmbedding]) -> None:
    inner = CountingEmbedding(model_name="m1", embed_batch_size=100)
    cached = make_cached(inner, redis_url="redis://127.0.0.1:1/0")
    vecs = cached.get_text_embedding_batch(["a", "b"])
    assert np.allclose(vecs[0], _vector("m1|text|a"), atol=1e-6)
    assert np.allclose(cached.get_query_embedding("q"), _vector("m1|query|q"), atol=1e-6)
    assert np.allclose(await cached.aget_text_embedding("c"), _vector("m1|text|c"), atol=1e-6)
    assert cached.store.stats()["errors"] >= 1
    assert cached.store.engine.stats()["breaker"] in ("open", "closed", "half_open")


def test_tenant_neutral_by_default_and_per_tenant(
    make_cached: Callable[..., CachedEmbedding],
) -> None:
    shared_inner = CountingEmbedding(model_name="m1")
    shared = make_cached(shared_inner)
    with tenant("acme"):
        a = shared.get_text_embedding("hello")
    with tenant("globex"):
        b = shared.get_text_embedding("hello")
    assert a == b and shared_inner.embedded == ["hello"]

    own_inner = CountingEmbedding(model_name="m1")
    own = make_cached(own_inner, per_tenant=True)
    with tenant("acme"):
        own.get_text_embedding("hello")
        own.get_text_embedding("hello")
    with tenant("globex"):
        own.get_text_embedding("hello")
    assert own_inner.embedded == ["hello", "hello"]  # once per tenant


def test_shares_an_engine_and_pickles(
    redis_url: str, make_engine: Callable[..., CacheEngine]
) -> None:
    engine = make_engine(validate=False)
    inner = CountingEmbedding(model_name="m1")
    cached = CachedEmbedding(inner, engine=engine)
    vec = cached.get_text_embedding("x")
    assert cached.namespace == engine.config.namespace
    assert "redis_url" not in cached.to_dict()  # may hold a password

    copy = pickle.loads(pickle.dumps(cached))
    assert copy.get_text_embedding("x") == vec
    assert copy.embed_model.embedded == []  # served from Redis by the reconnected copy
    copy.store.close()
    cached.store.clear()
