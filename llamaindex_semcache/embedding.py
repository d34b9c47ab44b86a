"""`CachedEmbedding`: any LlamaIndex embedding model behind a Redis embedding cache.

LlamaIndex's own ``embeddings_cache`` keys on the raw text only: two models, or a query
and a document embedding of the same text, share one key. This wrapper keys on model,
kind and text, reads a whole batch in one pipelined round trip and embeds only the misses
in one inner batch call. The Redis work is `semcache_core.EmbeddingStore`'s.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny

from semcache_core.embedding_store import DEFAULT_EMBEDDING_TTL, EmbeddingStore
from semcache_core.engine import CacheEngine

# Large enough that one `get_text_embedding_batch` call is one Redis round trip and one
# inner call for the misses; the inner model still splits by its own batch size.
_OUTER_BATCH = 2048


def default_model_id(embed_model: BaseEmbedding) -> str:
    """``<class name>:<model name>``: what names a LlamaIndex embedding model in keys."""
    return f"{embed_model.class_name()}:{embed_model.model_name}"


class CachedEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model whose vectors are cached in Redis.

    Works wherever a ``BaseEmbedding`` does: ``Settings.embed_model``,
    ``VectorStoreIndex(..., embed_model=...)``, or as a transformation in an
    ``IngestionPipeline``. Query and text (document) embeddings are cached apart, and
    every model has its own keys (`model_id`). A batch is one pipelined Redis read, one
    inner ``get_text_embedding_batch`` call for the misses (each distinct text once) and
    one pipelined write. Vectors are stored as float32; hits and misses both return the
    float32-rounded vector, so an index comes out the same whether the cache was warm.

    Tenant-neutral by default: the same text embedded by the same model gives the same
    vector for every tenant, so tenants share entries (nothing about a tenant's question
    is revealed by an embedding it did not ask for, only by the cost it saves). Pass
    ``per_tenant=True`` to key entries by the current `semcache_core.tenant` as well.

    Fail-open: when Redis is down or slow, every text is a miss and the inner model
    embeds it; the fault is counted and logged by the engine.

    Args:
        embed_model: the model to cache.
        engine: share a `CacheEngine`'s Redis clients, breaker and namespace.
        redis_url: where Redis is, when no engine is given (default: env
            ``SEMCACHE_REDIS_URL``).
        namespace: key namespace, when no engine is given.
        ttl: seconds an embedding is kept (``None``: forever; ``0``: read only).
            Default 30 days.
        per_tenant: key entries by tenant too.
        model_id: names the model in keys. Default ``<class name>:<model name>``; set it
            when other settings change the vectors (dimensions, instructions).
        **kwargs: other ``BaseEmbedding`` fields (``callback_manager``, ...).

    Example:
        >>> from llama_index.core import Settings
        >>> Settings.embed_model = CachedEmbedding(OpenAIEmbedding(), redis_url=url)
    """

    embed_model: SerializeAsAny[BaseEmbedding] = Field(description="The model to cache.")
    model_id: str = Field(default="", description="Names the model in cache keys.")
    ttl: float | None = Field(
        default=DEFAULT_EMBEDDING_TTL, ge=0, description="Seconds an embedding is kept."
    )
    per_tenant: bool = Field(default=False, description="Key entries by tenant too.")
    namespace: str | None = Field(default=None, description="Key namespace.")
    # Excluded from dumps (it may hold a password); kept so a pickled copy reconnects.
    redis_url: str | None = Field(default=None, exclude=True)

    _store: EmbeddingStore = PrivateAttr()

    def __init__(
        self,
        embed_model: BaseEmbedding,
        *,
        engine: CacheEngine | None = None,
        redis_url: str | None = None,
        namespace: str | None = None,
        ttl: float | None = DEFAULT_EMBEDDING_TTL,
        per_tenant: bool = False,
        model_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("model_name", embed_model.model_name)
        kwargs.setdefault("embed_batch_size", _OUTER_BATCH)
        fields: dict[str, Any] = {
            "embed_model": embed_model,
            "model_id": model_id or default_model_id(embed_model),
            "ttl": ttl,
            "per_tenant": per_tenant,
            "namespace": engine.config.namespace if engine is not None else namespace,
            "redis_url": engine.config.redis_url if engine is not None else redis_url,
        }
        super().__init__(**fields, **kwargs)
        self._store = EmbeddingStore(
            engine,
            redis_url=None if engine is not None else redis_url,
            namespace=None if engine is not None else namespace,
            ttl=ttl,
            per_tenant=per_tenant,
        )

    @classmethod
    def class_name(cls) -> str:
        return "SemcacheCachedEmbedding"

    @property
    def store(self) -> EmbeddingStore:
        """The Redis store (for `EmbeddingStore.stats` and `EmbeddingStore.clear`)."""
        return self._store

    # -- sync -----------------------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._store.embed_many(
            self.model_id,
            "query",
            [query],
            lambda texts: [self.embed_model.get_query_embedding(texts[0])],
        )[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._store.embed_many(
            self.model_id,
            "text",
            [text],
            lambda texts: [self.embed_model.get_text_embedding(texts[0])],
        )[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._store.embed_many(
            self.model_id, "text", texts, self.embed_model.get_text_embedding_batch
        )

    # -- async ----------------------------------------------------------------------------
    async def _aget_query_embedding(self, query: str) -> Embedding:
        async def compute(texts: list[str]) -> list[Embedding]:
            return [await self.embed_model.aget_query_embedding(texts[0])]

        return (await self._store.aembed_many(self.model_id, "query", [query], compute))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        async def compute(texts: list[str]) -> list[Embedding]:
            return [await self.embed_model.aget_text_embedding(texts[0])]

        return (await self._store.aembed_many(self.model_id, "text", [text], compute))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._store.aembed_many(
            self.model_id, "text", texts, self.embed_model.aget_text_embedding_batch
        )
