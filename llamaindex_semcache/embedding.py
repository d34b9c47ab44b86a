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

from semcache_core.embedding import SentenceTransformerEmbedder, minilm
from semcache_core.embedding_store import DEFAULT_EMBEDDING_TTL, EmbeddingStore
from semcache_core.engine import CacheEngine
from semcache_core.errors import ConfigurationError

from .tenancy import call_tenant

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
        if engine is not None and (redis_url is not None or namespace is not None):
            raise ConfigurationError(
                "CachedEmbedding: pass either engine= or redis_url=/namespace=, not both; "
                "a shared engine keeps its own Redis and namespace"
            )
        if not isinstance(embed_model, BaseEmbedding):
            raise ConfigurationError(
                f"embed_model must be a LlamaIndex BaseEmbedding, got "
                f"{type(embed_model).__name__} (semcache_core.minilm(): wrap it in "
                "MiniLMEmbedding())"
            )
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

    def _tenant(self) -> str | None:
        """With ``per_tenant``, the tenant from the ``semcache_tenant`` tag or context."""
        return call_tenant(None) if self.per_tenant else None

    # -- sync -----------------------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._store.embed_many(
            self.model_id,
            "query",
            [query],
            lambda texts: [self.embed_model.get_query_embedding(texts[0])],
            tenant=self._tenant(),
        )[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._store.embed_many(
            self.model_id,
            "text",
            [text],
            lambda texts: [self.embed_model.get_text_embedding(texts[0])],
            tenant=self._tenant(),
        )[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._store.embed_many(
            self.model_id,
            "text",
            texts,
            self.embed_model.get_text_embedding_batch,
            tenant=self._tenant(),
        )

    # -- async ----------------------------------------------------------------------------
    async def _aget_query_embedding(self, query: str) -> Embedding:
        async def compute(texts: list[str]) -> list[Embedding]:
            return [await self.embed_model.aget_query_embedding(texts[0])]

        return (
            await self._store.aembed_many(
                self.model_id, "query", [query], compute, tenant=self._tenant()
            )
        )[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        async def compute(texts: list[str]) -> list[Embedding]:
            return [await self.embed_model.aget_text_embedding(texts[0])]

        return (
            await self._store.aembed_many(
                self.model_id, "text", [text], compute, tenant=self._tenant()
            )
        )[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._store.aembed_many(
            self.model_id,
            "text",
            texts,
            self.embed_model.aget_text_embedding_batch,
            tenant=self._tenant(),
        )


class MiniLMEmbedding(BaseEmbedding):
    """The bundled offline all-MiniLM-L6-v2 (`semcache_core.minilm`) as a LlamaIndex
    embedding model: for ``Settings.embed_model``, an index, an ``IngestionPipeline``.

    The same model object as ``minilm()`` (loaded once per process), so a LlamaIndex
    index and the cache's semantic layer share it. Needs no network.

    Example:
        >>> Settings.embed_model = CachedEmbedding(MiniLMEmbedding(), redis_url=url)
    """

    _model: SentenceTransformerEmbedder = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        model = minilm()
        kwargs.setdefault("model_name", model.model_id)
        super().__init__(**kwargs)
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        return "SemcacheMiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._model.embed(query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._model.embed(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._model.embed_many(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._model.aembed(query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._model.aembed(text)
