"""A Redis store of embeddings, keyed by model, kind (query or text) and text.

Framework-free: the LlamaIndex ``CachedEmbedding`` (and any other adapter) asks it for
many vectors at once and hands it a function that embeds only the misses. One batch is
one pipelined read and, for the misses, one inner embedding call and one pipelined write.

Keys are ``<prefix>:__emb__:<namespace>:<owner>:<model-token>:<text-token>``. The text
token is a sha256 over canonical JSON of (model, kind, text), so a query embedding and
a document embedding of the same text never share a key, nor do two models. The owner is
``shared`` by default: an embedding depends on the model and the text only, not on who
asks. With ``per_tenant=True`` it is the tenant's digest instead. Vectors are stored as
little-endian float32 bytes; every vector returned (hit or miss) is the float32-rounded
one, so results never depend on whether the cache was warm.

Like the rest of semcache this fails open: a Redis fault makes every key a miss (the
inner embedder runs), a failed write is skipped, and both are counted and logged through
the engine at a bounded rate, behind the engine's circuit breaker.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import ConfigurationError
from .request import digest, tenant_digest
from .storage.commands import expiry_ms
from .storage.errors import REDIS_FAULTS
from .tenancy import current_tenant

if TYPE_CHECKING:
    from .engine import CacheEngine

Kind = Literal["query", "text"]
Vector = list[float]

#: Embeddings do not go stale the way answers do; they expire only to bound memory.
DEFAULT_EMBEDDING_TTL = 30 * 24 * 3600.0
SHARED_OWNER = "shared"
_KINDS = ("query", "text")


def pack_vector(vector: Sequence[float]) -> bytes:
    """Little-endian float32 bytes of a vector."""
    return np.asarray(vector, dtype="<f4").tobytes()


def unpack_vector(raw: bytes) -> Vector | None:
    """The vector in ``raw``; ``None`` when the bytes cannot be one (a corrupt entry)."""
    if not raw or len(raw) % 4:
        return None
    return [float(x) for x in np.frombuffer(raw, dtype="<f4")]


def _rounded(vector: Sequence[float]) -> Vector:
    return [float(x) for x in np.asarray(vector, dtype="<f4")]


class EmbeddingStore:
    """Embeddings in Redis: batched reads and writes, TTL, fail-open.

    Args:
        engine: share this `CacheEngine`'s Redis clients, circuit breaker, error
            counters and namespace. Without it, one is built (without any I/O) from
            ``redis_url``, ``namespace`` and ``settings``.
        redis_url: where Redis is (default: env ``SEMCACHE_REDIS_URL``); only without
            ``engine``.
        namespace: keys live under this namespace; only without ``engine``.
        ttl: seconds a stored embedding lives (``None``: never expires; ``0``: never
            written, the store only reads).
        per_tenant: key embeddings by tenant too (the current `tenant` context, else the
            engine's default tenant). Off by default: the same text embedded by the same
            model gives the same vector for everyone, so sharing is safe and saves calls.
        **settings: other `CacheConfig` fields (e.g. ``socket_timeout``); only without
            ``engine``.

    Raises:
        ConfigurationError: a bad setting, or ``engine`` given together with engine
            settings.

    Example:
        >>> store = EmbeddingStore(redis_url="redis://localhost:6379")
        >>> store.embed_many("openai:text-embedding-3-small", "text", texts, embed_batch)
    """

    def __init__(
        self,
        engine: CacheEngine | None = None,
        *,
        redis_url: str | None = None,
        namespace: str | None = None,
        ttl: float | None = DEFAULT_EMBEDDING_TTL,
        per_tenant: bool = False,
        **settings: Any,
    ) -> None:
        if ttl is not None and (isinstance(ttl, bool) or ttl < 0):
            raise ConfigurationError(f"ttl must be None or a number >= 0 seconds, got {ttl!r}")
        if engine is not None:
            given = [n for n, v in (("redis_url", redis_url), ("namespace", namespace)) if v]
            if given or settings:
                raise ConfigurationError(
                    f"pass either engine= or engine settings, not both (got "
                    f"{given + list(settings)}); configure the shared CacheEngine instead"
                )
            self._own_engine = False
        else:
            from .engine import CacheEngine

            engine = CacheEngine(redis_url, namespace=namespace, validate=False, **settings)
            self._own_engine = True
        self.engine: CacheEngine = engine
        self.ttl = ttl
        self.per_tenant = per_tenant
        self._base = self.engine.layout.embedding_base
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "writes": 0, "errors": 0, "corrupt": 0}

    # -- keys -----------------------------------------------------------------------------
    def owner(self, tenant: str | None = None) -> str:
        """The key part that says whose embeddings these are (``shared`` by default)."""
        if not self.per_tenant:
            return SHARED_OWNER
        return tenant_digest(tenant or current_tenant() or self.engine.config.default_tenant)

    def key(self, model: str, kind: Kind, text: str, *, owner: str = SHARED_OWNER) -> str:
        """The Redis key of one embedding.

        Raises:
            ConfigurationError: ``kind`` is neither ``"query"`` nor ``"text"``.
        """
        if kind not in _KINDS:
            raise ConfigurationError(f"kind must be 'query' or 'text', got {kind!r}")
        model_token = digest("embedding-model", model)
        return f"{self._base}{owner}:{model_token}:{digest('embedding', model, kind, text)}"

    def pattern(self, model: str | None = None) -> str:
        """A SCAN pattern for every stored embedding (of one model, if given)."""
        if model is None:
            return f"{self._base}*"
        return f"{self._base}*:{digest('embedding-model', model)}:*"

    # -- bookkeeping ------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    def stats(self) -> dict[str, int]:
        """Counters of this process: hits, misses, writes, errors, corrupt entries."""
        with self._lock:
            return dict(self._counts)

    def _fault(self, operation: str, exc: BaseException) -> None:
        self._count("errors")
        self.engine.report_error(operation, exc)

    def _parse(self, raws: Sequence[Any]) -> list[Vector | None]:
        out: list[Vector | None] = []
        for raw in raws:
            vec = unpack_vector(raw) if isinstance(raw, bytes) else None
            if raw is not None and vec is None:
                self._count("corrupt")  # overwritten by the write that follows the miss
            out.append(vec)
        hits = sum(v is not None for v in out)
        self._count("hits", hits)
        self._count("misses", len(out) - hits)
        return out

    def _write_args(self, n: int) -> tuple[bool, int | None]:
        """Whether to write at all (TTL 0 means no, and not while Redis is failing), and
        the expiry in milliseconds."""
        if n == 0 or self.ttl == 0 or not self.engine.breaker.allow_write():
            return False, None
        return True, None if self.ttl is None else expiry_ms(self.ttl)

    # -- sync -----------------------------------------------------------------------------
    def get_many(
        self, model: str, kind: Kind, texts: Sequence[str], *, tenant: str | None = None
    ) -> list[Vector | None]:
        """The stored vector of each text, ``None`` for a miss; one pipelined read.
        Redis faults make every text a miss."""
        owner = self.owner(tenant)
        keys = [self.key(model, kind, t, owner=owner) for t in texts]
        if not keys:
            return []
        if not self.engine.breaker.allow():
            self._count("misses", len(keys))
            return [None] * len(keys)
        try:
            raws = self.engine._store.get_values(keys)
        except Exception as exc:
            self._fault("embedding_lookup", exc)
            self._count("misses", len(keys))
            return [None] * len(keys)
        self.engine.breaker.record_success()
        return self._parse(raws)

    def put_many(
        self,
        model: str,
        kind: Kind,
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        *,
        tenant: str | None = None,
    ) -> int:
        """Store vectors (one pipelined write); returns how many were written."""
        write, px = self._write_args(len(texts))
        if not write:
            return 0
        owner = self.owner(tenant)
        try:
            items = [
                (self.key(model, kind, text, owner=owner), pack_vector(vec))
                for text, vec in zip(texts, vectors, strict=True)
            ]
            self.engine._store.set_values(items, px)
        except Exception as exc:
            self._fault("embedding_store", exc)
            return 0
        self.engine.breaker.record_success()
        self._count("writes", len(texts))
        return len(texts)

    def embed_many(
        self,
        model: str,
        kind: Kind,
        texts: Sequence[str],
        compute: Callable[[list[str]], Sequence[Sequence[float]]],
        *,
        tenant: str | None = None,
    ) -> list[Vector]:
        """Vectors for ``texts``: stored ones from Redis, the rest from one ``compute``
        call (each distinct missing text once), which are then stored.

        Args:
            model: names the model; part of every key.
            kind: ``"query"`` or ``"text"`` (models may embed them differently).
            texts: what to embed, duplicates allowed.
            compute: embeds a list of texts, in order; its errors propagate.
            tenant: with ``per_tenant``, whose entries (default: the current tenant).

        Returns:
            One float32-rounded vector per text, in order.
        """
        owner_tenant = tenant or current_tenant()
        unique = list(dict.fromkeys(texts))
        found = self.get_many(model, kind, unique, tenant=owner_tenant)
        by_text = {t: v for t, v in zip(unique, found, strict=True) if v is not None}
        missing = [t for t in unique if t not in by_text]
        if missing:
            fresh = [_rounded(v) for v in _checked(compute(missing), len(missing))]
            self.put_many(model, kind, missing, fresh, tenant=owner_tenant)
            by_text.update(zip(missing, fresh, strict=True))
        return [by_text[t] for t in texts]

    def clear(self, model: str | None = None) -> int:
        """Delete stored embeddings (of one model, if given), every owner; SCAN + UNLINK.

        Raises:
            BackendUnavailableError: Redis failed (administration calls do not fail open).
        """
        try:
            return self.engine._store.delete_scan(self.pattern(model))
        except REDIS_FAULTS as exc:
            raise self.engine._state.admin_error(exc) from exc

    # -- async ----------------------------------------------------------------------------
    async def aget_many(
        self, model: str, kind: Kind, texts: Sequence[str], *, tenant: str | None = None
    ) -> list[Vector | None]:
        """The async twin of `get_many` (redis.asyncio)."""
        owner = self.owner(tenant)
        keys = [self.key(model, kind, t, owner=owner) for t in texts]
        if not keys:
            return []
        if not self.engine.breaker.allow():
            self._count("misses", len(keys))
            return [None] * len(keys)
        try:
            store = await self.engine._astore()
            raws = await store.get_values(keys)
        except Exception as exc:
            self._fault("embedding_lookup", exc)
            self._count("misses", len(keys))
            return [None] * len(keys)
        self.engine.breaker.record_success()
        return self._parse(raws)

    async def aput_many(
        self,
        model: str,
        kind: Kind,
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        *,
        tenant: str | None = None,
    ) -> int:
        """The async twin of `put_many`."""
        write, px = self._write_args(len(texts))
        if not write:
            return 0
        owner = self.owner(tenant)
        try:
            items = [
                (self.key(model, kind, text, owner=owner), pack_vector(vec))
                for text, vec in zip(texts, vectors, strict=True)
            ]
            store = await self.engine._astore()
            await store.set_values(items, px)
        except Exception as exc:
            self._fault("embedding_store", exc)
            return 0
        self.engine.breaker.record_success()
        self._count("writes", len(texts))
        return len(texts)

    async def aembed_many(
        self,
        model: str,
        kind: Kind,
        texts: Sequence[str],
        compute: Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]],
        *,
        tenant: str | None = None,
    ) -> list[Vector]:
        """The async twin of `embed_many`; ``compute`` is awaited."""
        owner_tenant = tenant or current_tenant()
        unique = list(dict.fromkeys(texts))
        found = await self.aget_many(model, kind, unique, tenant=owner_tenant)
        by_text = {t: v for t, v in zip(unique, found, strict=True) if v is not None}
        missing = [t for t in unique if t not in by_text]
        if missing:
            fresh = [_rounded(v) for v in _checked(await compute(missing), len(missing))]
            await self.aput_many(model, kind, missing, fresh, tenant=owner_tenant)
            by_text.update(zip(missing, fresh, strict=True))
        return [by_text[t] for t in texts]

    async def aclear(self, model: str | None = None) -> int:
        """The async twin of `clear`."""
        try:
            store = await self.engine._astore()
            return await store.delete_scan(self.pattern(model))
        except REDIS_FAULTS as exc:
            raise self.engine._state.admin_error(exc) from exc

    def close(self) -> None:
        """Close the sync connection pool if this store built its own engine."""
        if self._own_engine:
            self.engine.close()


def _checked(vectors: Sequence[Sequence[float]], expected: int) -> Sequence[Sequence[float]]:
    if len(vectors) != expected:
        raise ValueError(
            f"the embedding model returned {len(vectors)} vectors for {expected} texts"
        )
    return vectors
