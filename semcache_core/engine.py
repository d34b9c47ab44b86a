"""`CacheEngine`: the exact and semantic layers on one RedisVL index, sync and async.

The engine turns a `CacheRequest` into at most one HMGET (exact layer) and one
pre-filtered KNN search (semantic layer), and a store into one pipelined write. Every
Redis fault is caught here: lookups become misses, stores are skipped, and the fault is
counted and logged at a bounded rate. Misconfiguration raises at construction.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import dataclasses
import functools
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
import redis.asyncio as aredis

from . import calibration, policy, query, tracing
from .calibration import Calibration, Verdict
from .calibrator import BackgroundCalibrator
from .coalesce import Coalescer
from .config import CacheConfig, build_config, check_tenant_id, redacted_url
from .core.verify import Verification
from .counters import PendingCounts, aread_totals, flush_async, flush_sync, read_totals
from .embedding import CachedEmbedder, Embedder, as_embedder, token_window
from .entry import (
    CorruptEntry,
    DecodeFailed,
    StoredEntry,
    entry_fields,
    parse_entry,
    vector_bytes,
)
from .errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    SemcacheError,
    SerializationError,
)
from .judges import Judge, as_judge, default_judge
from .l1 import (
    L1Coherence,
    LocalTier,
    apublish_clear,
    apublish_drop,
    apublish_drop_prefix,
    drop_message,
    l1_channel,
    publish_clear,
    publish_drop,
    publish_drop_prefix,
)
from .metrics import LocalStats, summarize
from .microbatch import MicroBatcher
from .policy import Outcome
from .pricing import PriceTable, Usage
from .prometheus import PrometheusMetrics
from .request import CacheRequest, scope_digest, tag_digest, tenant_digest
from .resilience import CircuitBreaker, RateLimitedLog
from .shadow import PendingCandidate, ShadowLedger
from .store import (
    NO_SEARCH_MODULE,
    AsyncStore,
    Layout,
    SyncStore,
    check_index_info,
    check_meta,
    index_schema_dict,
    is_missing_index,
    make_async_client,
    make_client,
    meta_document,
    parse_meta,
)
from .tenancy import UNSET, _Unset, current_context
from .tenant_policy import (
    TenantPolicy,
    check_overrides,
    default_policy,
    effective_policy,
    make_policy,
    parse_stored,
)
from .verifiers import CandidateVerifier, as_verifier

logger = logging.getLogger("semcache")

Decoder = Callable[[bytes, str], Any]
TextOf = Callable[[Any], str]
_REDIS_FAULTS = (redis.RedisError, OSError, BackendUnavailableError)
_DEFAULT_EXACT_ONLY_DIMS = 384


P = ParamSpec("P")
R = TypeVar("R")


def _span_attributes(self: CacheEngine, args: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"semcache.namespace": self.config.namespace}
    request = args[0] if args else None
    if isinstance(request, CacheRequest):
        attrs["semcache.tenant_digest"] = request.tenant_token
    return attrs


def _end_span(span: Any, result: Any) -> None:
    if isinstance(result, LookupResult):
        span.set_attribute("semcache.outcome", result.outcome.value)
        span.set_attribute("semcache.hit", result.hit)
        if result.similarity is not None:
            span.set_attribute("semcache.similarity", result.similarity)
    elif isinstance(result, bool):
        span.set_attribute("semcache.stored", result)


def _instrumented(
    name: str,
) -> Callable[
    [Callable[Concatenate[CacheEngine, P], R]], Callable[Concatenate[CacheEngine, P], R]
]:
    """A span around the call (with opentelemetry), then write due counters (sync)."""

    def decorate(
        fn: Callable[Concatenate[CacheEngine, P], R],
    ) -> Callable[Concatenate[CacheEngine, P], R]:
        @functools.wraps(fn)
        def wrapper(self: CacheEngine, /, *args: P.args, **kwargs: P.kwargs) -> R:
            span_cm = (
                tracing.start_span(name, _span_attributes(self, args)) if tracing.ENABLED else None
            )
            if span_cm is None:
                result = fn(self, *args, **kwargs)
            else:
                with span_cm as span:
                    result = fn(self, *args, **kwargs)
                    _end_span(span, result)
            self._maybe_flush_sync()
            return result

        return wrapper

    return decorate


def _ainstrumented(
    name: str,
) -> Callable[
    [Callable[Concatenate[CacheEngine, P], Awaitable[R]]],
    Callable[Concatenate[CacheEngine, P], Coroutine[Any, Any, R]],
]:
    """The async twin of `_instrumented` (counters written with redis.asyncio)."""

    def decorate(
        fn: Callable[Concatenate[CacheEngine, P], Awaitable[R]],
    ) -> Callable[Concatenate[CacheEngine, P], Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def wrapper(self: CacheEngine, /, *args: P.args, **kwargs: P.kwargs) -> R:
            span_cm = (
                tracing.start_span(name, _span_attributes(self, args)) if tracing.ENABLED else None
            )
            if span_cm is None:
                result = await fn(self, *args, **kwargs)
            else:
                with span_cm as span:
                    result = await fn(self, *args, **kwargs)
                    _end_span(span, result)
            await self._maybe_flush_async()
            return result

        return wrapper

    return decorate


def _flush_at_exit(ref: weakref.ReferenceType[CacheEngine]) -> None:
    engine = ref()
    if engine is None or engine._pending is None:
        return
    try:
        engine._maybe_flush_sync(force=True)
    except Exception:  # exiting: nothing to fail open into
        logger.warning("semcache: could not write pending counts at exit")


def _approx_tokens(text: str) -> int:
    """A token count for embedders that do not report theirs: about 4 characters each."""
    return len(text) // 4 + 1


def _identity(payload: bytes, codec: str) -> Any:
    return payload


def _default_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else repr(value)


# Disagreeing verdicts raise the candidate entry's floor just above the similarity at
# which it answered a different question.
_FLOOR_STEP = 1e-4
# A live tenant's recalibrated threshold moves down only by at least this much (up: any
# amount), so the audit log is not a stream of jitter.
_RECALIBRATE_STEP = 0.005
# False while a coalesced lookup's first pass runs: its result is counted once, later.
_RECORD: contextvars.ContextVar[bool] = contextvars.ContextVar("semcache_record", default=True)
_POLICY_CACHE_MAX = 100_000
_LAST: contextvars.ContextVar[LookupResult | None] = contextvars.ContextVar(
    "semcache_last_lookup", default=None
)


def last_lookup() -> LookupResult | None:
    """The result of the latest lookup made in this thread or task, or ``None``.

    Where a framework returns the user's own object (a pydantic model from structured
    output, a bare string from ``predict``), this tells whether it came from the cache::

        person = structured_llm.invoke("Alice is 31 years old")
        if (hit := last_lookup()) and hit.hit:
            print("cached", hit.layer, hit.similarity)
    """
    return _LAST.get()


def remember_lookup(result: LookupResult) -> None:
    """Make ``result`` what `last_lookup` returns in the current context: for adapters
    whose framework runs the lookup in a copied context (LangChain's runnables)."""
    _LAST.set(result)


@dataclass(frozen=True)
class LookupResult:
    """What a lookup found. A miss is a value, never an exception.

    Attributes:
        outcome: how the lookup ended.
        value: the decoded payload on a hit, else ``None``.
        similarity: cosine similarity of the nearest semantic candidate (hit or not).
        key: the Redis key of the served entry (or, for a shadow hit, of the candidate).
        question: the cached question that answered (semantic hits) or would have
            answered (shadow hits).
        created_at: when the served entry was written (epoch seconds).
        seconds: time the lookup took.
        tokens_saved: tokens of the cached call, on a served hit (0 if unknown).
        cost_saved_usd: what they cost at the price table (0 if usage or price unknown).
        stale: served by a stale-if-error lookup (``lookup(..., stale=True)``); the
            entry may be past its TTL (within ``stale_grace``).
        guard: for a ``guarded`` lookup, the verifier rule that refused the candidate
            (``"number"``, ``"negation"``, ``"order"``...).
    """

    outcome: Outcome
    value: Any = None
    similarity: float | None = None
    key: str | None = None
    question: str | None = None
    created_at: float | None = None
    seconds: float = 0.0
    stale: bool = False
    tokens_saved: int = 0
    cost_saved_usd: float = 0.0
    guard: str | None = None

    @property
    def hit(self) -> bool:
        """True when the value is served (exact, semantic or promoted)."""
        return self.outcome in (Outcome.EXACT_HIT, Outcome.SEMANTIC_HIT, Outcome.PROMOTED)

    @property
    def layer(self) -> str | None:
        return {
            Outcome.EXACT_HIT: "exact",
            Outcome.SEMANTIC_HIT: "semantic",
            Outcome.PROMOTED: "semantic",
        }.get(self.outcome)


class CacheEngine:
    """Tenant-isolated exact and semantic cache on Redis.

    Args:
        redis_url: where Redis (with the search module) is; env ``SEMCACHE_REDIS_URL``.
        embedder: a LangChain ``Embeddings``, LlamaIndex ``BaseEmbedding``, RedisVL
            vectorizer or callable. Without one, only the exact layer works.
        namespace: one index per namespace; entries never cross namespaces.
        config: a `CacheConfig` to start from; keyword settings override it.
        redis_client: use this redis-py client instead of one built from ``redis_url``.
        async_redis_client: use this ``redis.asyncio`` client for async calls (it must
            only be used from one event loop). By default one is made per event loop.
        validate: connect now and check (or create) the index, so a misconfiguration
            raises here. ``False`` defers all I/O to the first call or `setup`/`asetup`.
        metrics: Prometheus metrics: ``True`` for the default registry, a
            `PrometheusMetrics` (own registry, tenant label), or ``None`` for none.
        prices: model id -> price per million tokens, winning over the maintained
            genai-prices data (the ``prices`` extra), or a `PriceTable`; ids match
            exactly (`semcache_core.pricing`).
        judge: decides whether a shadow candidate agreed with the fresh answer:
            ``"text"`` (normalized equality), an `EmbeddingJudge`, or a function
            ``(question, candidate, fresh) -> bool`` (see `semcache_core.judges`). Default
            (`default_judge`): the answer-embedding judge at its measured bar when the
            embedder is all-MiniLM-L6-v2, else ``"text"``.
        verifier: checks every semantic candidate before it is served: ``None`` (the
            built-in rules at ``verify_strictness``), ``"lenient"``, ``"balanced"``,
            ``"strict"``, or any sync or async callable ``(query_question,
            candidate_question) -> bool | Verification`` such as a cross-encoder or an
            LLM judge (see `semcache_core.verifiers`).
        clock: wall clock (epoch seconds), injectable for tests.
        **settings: any `CacheConfig` field, e.g. ``threshold=0.92, ttl=3600``.

    Raises:
        ConfigurationError: a setting is invalid, Redis has no search module, or (with
            ``require_redis=True``) Redis is unreachable.
        SchemaMismatchError: the namespace's index was built differently (dims, version).

    Example:
        >>> engine = CacheEngine("redis://localhost:6379", embedder=my_embeddings)
        >>> req = engine.request("What is our refund policy?")
        >>> engine.lookup(req).hit
        False
        >>> engine.store(req, b"30 days, no questions asked.")
        True
    """

    def __init__(
        self,
        redis_url: str | None = None,
        embedder: Any = None,
        namespace: str | None = None,
        *,
        config: CacheConfig | None = None,
        redis_client: redis.Redis | None = None,
        async_redis_client: aredis.Redis | None = None,
        validate: bool = True,
        judge: Any = None,
        verifier: Any = None,
        metrics: PrometheusMetrics | bool | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        ttl: float | _Unset | None = UNSET,
        **settings: Any,
    ) -> None:
        overrides = {k: v for k, v in settings.items() if v is not None}
        if redis_url is not None:
            overrides["redis_url"] = redis_url
        if namespace is not None:
            overrides["namespace"] = namespace
        if ttl is not UNSET:
            overrides["ttl"] = ttl
        self.config = build_config(config, **overrides)
        self.layout = Layout(self.config.key_prefix, self.config.namespace)
        self.embedder: Embedder | None = None
        if embedder is not None:
            inner = as_embedder(embedder)
            if self.config.embed_batch_window is not None and not isinstance(inner, MicroBatcher):
                inner = MicroBatcher(
                    inner,
                    window=self.config.embed_batch_window,
                    max_batch=self.config.embed_batch_max,
                )
            self.embedder = CachedEmbedder(inner, self.config.embedding_cache_size)
        self._l1: LocalTier | None = (
            LocalTier(self.config.l1_maxsize, self.config.l1_ttl, self.config.l1_policy)
            if self.config.l1_maxsize
            else None
        )
        self._l1_channel = l1_channel(self.config.key_prefix, self.config.namespace)
        self._l1_sub: L1Coherence | None = None
        self._l1_pid = 0
        self._coalescer: Coalescer | None = (
            Coalescer(
                self.config.key_prefix,
                self.config.namespace,
                wait_timeout=self.config.coalesce_wait,
                lease=self.config.coalesce_lease,
            )
            if self.config.coalesce != "off"
            else None
        )
        self.judge: Judge = as_judge(judge) if judge is not None else default_judge(self.embedder)
        self.verifier: CandidateVerifier = as_verifier(verifier, self.config.verify_strictness)
        window = token_window(embedder) if embedder is not None else None
        if self.config.max_question_tokens is not None:
            count = window[1] if window else _approx_tokens
            window = (self.config.max_question_tokens, count)
        self._window = window
        self._clock = clock
        self._ledger = ShadowLedger()
        self._policies: dict[str, tuple[TenantPolicy, float]] = {}
        self._calibrator = BackgroundCalibrator(
            self._calibrate_in_background,
            lambda exc: self._fault("calibrate", None, exc),
            self.config.calibrate_every,
        )
        self._audit_rng = random.Random()
        self._breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_cooldown)
        self._log = RateLimitedLog()
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.metrics: PrometheusMetrics | None = (
            PrometheusMetrics.get() if metrics is True else metrics or None
        )
        self._pending = PendingCounts() if self.config.persist_stats else None
        self._stats = LocalStats(self.config.namespace, self.metrics, self._pending)
        self._ready = False
        self._setup_lock = threading.Lock()
        self._dims: int | None = self.config.dims
        self._store = SyncStore(
            redis_client if redis_client is not None else make_client(self.config),
            self.layout,
            self.config,
        )
        self._shared_async_client = async_redis_client
        self._async_stores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncStore, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        # Counts not yet written would be lost when a short script or a notebook exits
        # without close(): write them at interpreter exit (weakly: no leak, no I/O if gone).
        atexit.register(_flush_at_exit, weakref.ref(self))
        if validate:
            self._validate_now()

    # -- construction and setup ---------------------------------------------------------
    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def _validate_now(self) -> None:
        try:
            self.setup()
        except _REDIS_FAULTS as exc:
            if self.config.require_redis:
                raise BackendUnavailableError(
                    f"cannot reach Redis at {redacted_url(self.config.redis_url)} ({exc}). "
                    "Start one (`semcache redis` runs an embedded server) or fix redis_url; pass "
                    "require_redis=False to start anyway and cache once Redis is back"
                ) from exc
            logger.warning(
                "semcache: Redis at %s is unreachable (%s); caching starts when it is back",
                redacted_url(self.config.redis_url),
                exc,
            )

    def _expected_dims_sync(self) -> int:
        if self._dims is None:
            probe = getattr(getattr(self.embedder, "inner", None), "dims", None)
            if isinstance(probe, int) and probe > 0:
                self._dims = probe
            elif self.embedder is not None:
                self._dims = len(self.embedder.inner.embed("dimension probe"))  # type: ignore[attr-defined]
            else:
                self._dims = _DEFAULT_EXACT_ONLY_DIMS
        return self._dims

    async def _expected_dims_async(self) -> int:
        if self._dims is None:
            probe = getattr(getattr(self.embedder, "inner", None), "dims", None)
            if isinstance(probe, int) and probe > 0:
                self._dims = probe
            elif self.embedder is not None:
                vec = await self.embedder.inner.aembed("dimension probe")  # type: ignore[attr-defined]
                self._dims = len(vec)
            else:
                self._dims = _DEFAULT_EXACT_ONLY_DIMS
        return self._dims

    def _plan_setup(self, info: Any, meta_raw: Any, dims: int) -> bool:
        """Check what Redis holds; True when the index must be created."""
        expected = meta_document(self.config, dims)
        meta = parse_meta(meta_raw, self.layout) if meta_raw is not None else None
        if info is not None:
            check_index_info(self.layout, info, meta)
        if meta is not None:
            if self.embedder is None and self.config.dims is None:
                expected = {**expected, "dims": meta.get("dims")}
                self._dims = meta.get("dims")
            check_meta(self.layout, meta, expected)
        return info is None

    def setup(self) -> None:
        """Connect, check the search module, and check or create the index (sync).

        Raises:
            ConfigurationError: no search module in this Redis.
            SchemaMismatchError: the existing index differs from this configuration.
            redis.RedisError: Redis is unreachable (the caller decides whether to fail).
        """
        if self._ready:
            return
        with self._setup_lock:
            if self._ready:
                return
            store = self._store
            if not store.has_search_module():
                raise ConfigurationError(
                    NO_SEARCH_MODULE.format(url=redacted_url(self.config.redis_url))
                )
            dims = self._expected_dims_sync()
            if self._plan_setup(store.index_info(), store.read_meta(), dims):
                store.write_meta_if_absent(meta_document(self.config, dims))
                self._plan_setup(None, store.read_meta(), dims)
                store.create_index(index_schema_dict(self.config, dims))
            self._ready = True

    async def asetup(self) -> None:
        """The async twin of `setup`."""
        if self._ready:
            return
        store = await self._astore()
        if not await store.has_search_module():
            raise ConfigurationError(
                NO_SEARCH_MODULE.format(url=redacted_url(self.config.redis_url))
            )
        dims = await self._expected_dims_async()
        if self._plan_setup(await store.index_info(), await store.read_meta(), dims):
            await store.write_meta_if_absent(meta_document(self.config, dims))
            self._plan_setup(None, await store.read_meta(), dims)
            await store.create_index(index_schema_dict(self.config, dims))
        self._ready = True

    async def _astore(self) -> AsyncStore:
        loop = asyncio.get_running_loop()
        entry = self._async_stores.get(loop)
        if entry is None:
            client = self._shared_async_client or make_async_client(self.config)
            store = AsyncStore(client, self.layout, self.config)
            closer = _close_at_loop_shutdown(store, own=self._shared_async_client is None)
            await closer.asend(None)
            entry = self._async_stores[loop] = (store, closer)
        return entry[0]

    def drop_index(self, *, delete_entries: bool = True) -> int:
        """Drop this namespace's index (and by default its entries). For migrations.

        Returns:
            The number of entries deleted.
        """
        removed = self._store.delete_scan(self.layout.scan_pattern()) if delete_entries else 0
        self._store.drop_index()
        if self._l1 is not None:
            self._l1.clear()
        if self.config.l1_publish:
            publish_clear(self._store.client, self._l1_channel)
        self._ready = False
        return removed

    def drop_namespace(self) -> int:
        """Delete everything this namespace holds in Redis: the index and its entries
        (as `drop_index`), tenant policies, verdict streams, the audit log and the
        persisted counters. For tests, teardown and decommissioning.

        Returns:
            The number of entries deleted.
        """
        removed = self.drop_index()
        client = self._store.client
        prefix, ns = self.config.key_prefix, self.config.namespace
        keys = [self.layout.policy_key, self.layout.audit_key]
        for pattern in (f"{prefix}:__verdicts__:{ns}:*", f"{prefix}:__stats__:{ns}:*"):
            keys += [k.decode() for k in client.scan_iter(match=pattern, count=1000)]
        self._store.unlink(keys)
        if self._pending is not None:
            self._pending.take()  # counts of the deleted namespace are not written back
        self._policies.clear()
        return removed

    # -- requests -----------------------------------------------------------------------
    def request(
        self,
        prompt: str,
        *,
        question: str | None = None,
        scope: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        ttl: float | _Unset | None = UNSET,
        kind: str = "",
    ) -> CacheRequest:
        """Build a request, filling tenant, tags, TTL and scope from `cache_context`.

        Args:
            prompt: the full prompt (exact layer).
            question: the text to embed (semantic layer); defaults to ``prompt``.
            scope: what must match exactly for any hit (model, parameters, history).
            tenant: overrides the context's tenant; else the configured default tenant.
            tags: added to the context's tags.
            ttl: overrides the context's and the configured TTL.
            kind: the sort of request (``"chat"``, ``"structured"``...); kinds in
                ``exact_only_kinds`` never use the semantic layer.

        Inside ``cache_context(semantic=False)`` the request is exact-only. Inside
        ``cache_context(question=text)`` only ``text`` is embedded, and the rest of the
        question (a template around it) joins the scope; a question that does not
        contain ``text`` is exact-only.
        """
        ctx = current_context()
        merged_scope = dict(scope or {})
        if ctx.scope:
            merged_scope["context"] = dict(ctx.scope)
        embedded = prompt if question is None else question
        if ctx.semantic is False:
            embedded = ""
        elif ctx.question is not None and embedded:
            if ctx.question in embedded:
                merged_scope["template"] = embedded.replace(ctx.question, "\x00")
                embedded = ctx.question
            else:
                embedded = ""  # the declared question is not in this request: exact only
        return CacheRequest.build(
            # An explicit tenant is checked, never replaced: "" is an error, not the
            # default tenant.
            tenant=tenant if tenant is not None else ctx.tenant or self.config.default_tenant,
            namespace=self.config.namespace,
            prompt=prompt,
            question=embedded,
            scope=merged_scope,
            tags=tuple(ctx.tags) + tuple(t for t in (tags or ()) if t not in ctx.tags),
            ttl=ttl if ttl is not UNSET else ctx.ttl,
            kind=kind,
        )

    # -- pure steps shared by both drivers ----------------------------------------------
    def _key(self, request: CacheRequest) -> str:
        return self.layout.entry_key(request.tenant_token, request.exact_key)

    def _accept(
        self,
        request: CacheRequest,
        key: str,
        fields: Mapping[str, Any],
        decode: Decoder,
        distance: Any = None,
        stale: bool = False,
    ) -> tuple[StoredEntry, Any] | None:
        """Parse and decode a stored entry; ``None`` if it is expired (for a stale
        lookup: past its grace period) or not this request's. Raises `CorruptEntry`
        when it cannot be read (its fields, or its decoder raised `SerializationError`),
        `DecodeFailed` when its decoder raised anything else."""
        entry = parse_entry(key, fields, distance)
        if entry.partition != request.partition:
            # The pre-filter makes this impossible; if it ever happens, never serve it.
            self._stats.record_error("partition_guard", request.tenant)
            logger.error("semcache: refused an entry from another partition: %s", key)
            return None
        grace = self.config.stale_grace if stale else 0.0
        if entry.expires_at is not None and policy.is_expired(
            entry.expires_at + grace, self._clock()
        ):
            return None
        try:
            value = decode(entry.payload, entry.codec)
        except SerializationError as exc:
            raise CorruptEntry(f"payload did not decode: {exc}") from exc
        except Exception as exc:
            raise DecodeFailed(key, entry.codec, exc).with_traceback(exc.__traceback__) from None
        return entry, value

    def _result(
        self,
        request: CacheRequest,
        outcome: Outcome,
        started: float,
        entry: StoredEntry | None = None,
        value: Any = None,
        similarity: float | None = None,
        stale: bool = False,
        guard: str | None = None,
        guarded_key: str | None = None,
    ) -> LookupResult:
        seconds = time.perf_counter() - started
        served = outcome in (Outcome.EXACT_HIT, Outcome.SEMANTIC_HIT, Outcome.PROMOTED)
        record = _RECORD.get()
        if stale:
            # A second lookup for a request already counted: counted apart.
            self._stats.record(request.tenant, "stale_served" if served else "stale_missed")
        elif record:
            self._stats.record_lookup(request.tenant, outcome, seconds, similarity)
        tokens, usd = 0, 0.0
        if served and entry is not None and entry.usage is not None:
            usage = Usage.from_json(entry.usage)
            if usage is not None:
                tokens, usd = usage.total_tokens, self.prices.cost(usage)
                if record:
                    self._stats.record_saved(request.tenant, tokens, usd)
        result = LookupResult(
            outcome=outcome,
            value=value,
            similarity=similarity,
            key=entry.key if entry else guarded_key,
            question=entry.question if entry else None,
            created_at=entry.created_at if entry else None,
            seconds=seconds,
            stale=stale,
            tokens_saved=tokens,
            cost_saved_usd=usd,
            guard=guard,
        )
        _LAST.set(result)
        return result

    def _fault(
        self,
        operation: str,
        request: CacheRequest | None,
        exc: BaseException,
        *,
        breaker: bool = True,
    ) -> None:
        if is_missing_index(exc):
            # Redis lost the index (came back empty): set it up again on the next call.
            self._ready = False
        if breaker and isinstance(exc, _REDIS_FAULTS):
            self._breaker.record_failure()
        self._stats.record_error(operation, request.tenant if request else None)
        self._log.error(operation, _translate(exc))

    def _slide(self, entry: StoredEntry) -> float | None:
        return policy.sliding_expiry(entry.ttl, self.config.sliding_ttl, self._clock())

    # -- L1 ----------------------------------------------------------------------------
    def _l1_tier(self) -> LocalTier | None:
        """The in-process tier, its coherence subscriber started on first use (and again
        in a forked child)."""
        if self._l1 is None:
            return None
        if self._l1_sub is None or self._l1_pid != os.getpid():
            with self._setup_lock:
                if self._l1_sub is None or self._l1_pid != os.getpid():
                    self._l1.clear()
                    self._l1_sub = L1Coherence(
                        self._l1,
                        self._l1_channel,
                        redis_url=self.config.redis_url,
                        connect_timeout=self.config.connect_timeout,
                    ).start()
                    self._l1_pid = os.getpid()
        return self._l1

    def _announce(self, request: CacheRequest) -> tuple[str, str] | None:
        """The L1 coherence message a write of ``request`` carries, if announcing."""
        if not self.config.l1_publish:
            return None
        return self._l1_channel, drop_message([self._key(request)])

    def _l1_put(
        self, tier: LocalTier, key: str, fields: Mapping[str, Any], entry: StoredEntry, since: int
    ) -> None:
        remaining = None if entry.expires_at is None else entry.expires_at - self._clock()
        if remaining is None or remaining > 0:
            tier.put(key, dict(fields), remaining, since=since)

    def _l1_drop_sync(self, keys: Sequence[str]) -> None:
        if self._l1 is not None:
            self._l1.drop_many(keys)
        if self.config.l1_publish and self._breaker.allow_write():
            try:
                publish_drop(self._store.client, self._l1_channel, keys)
            except Exception as exc:
                self._fault("l1_publish", None, exc, breaker=False)

    async def _l1_drop_async(self, store: AsyncStore, keys: Sequence[str]) -> None:
        if self._l1 is not None:
            self._l1.drop_many(keys)
        if self.config.l1_publish and self._breaker.allow_write():
            try:
                await apublish_drop(store.client, self._l1_channel, keys)
            except Exception as exc:
                self._fault("l1_publish", None, exc, breaker=False)

    def _l1_after_invalidate(self, tenant: str | None, only_tenant: bool) -> None:
        prefix = self.layout.key_prefix + tenant_digest(tenant) + ":" if tenant else None
        if self._l1 is not None:
            if only_tenant and prefix:
                self._l1.drop_prefix(prefix)
            else:
                self._l1.clear()
        if self.config.l1_publish:
            if only_tenant and prefix:
                publish_drop_prefix(self._store.client, self._l1_channel, prefix)
            else:
                publish_clear(self._store.client, self._l1_channel)

    async def _al1_after_invalidate(
        self, store: AsyncStore, tenant: str | None, only_tenant: bool
    ) -> None:
        prefix = self.layout.key_prefix + tenant_digest(tenant) + ":" if tenant else None
        if self._l1 is not None:
            if only_tenant and prefix:
                self._l1.drop_prefix(prefix)
            else:
                self._l1.clear()
        if self.config.l1_publish:
            if only_tenant and prefix:
                await apublish_drop_prefix(store.client, self._l1_channel, prefix)
            else:
                await apublish_clear(store.client, self._l1_channel)

    # -- tenant policies ----------------------------------------------------------------
    def _cache_policy(self, tenant: str, raw: Any) -> TenantPolicy:
        try:
            pol = effective_policy(self.config, parse_stored(raw))
        except (ValueError, ConfigurationError) as exc:
            # A corrupt stored policy must not break lookups: the code defaults apply.
            self._stats.record_error("policy", tenant)
            self._log.error("policy", exc)
            pol = default_policy(self.config)
        if len(self._policies) >= _POLICY_CACHE_MAX:
            self._policies.clear()
        self._policies[tenant] = (pol, time.monotonic() + self.config.policy_refresh)
        return pol

    def _cached_policy(self, tenant: str) -> TenantPolicy | None:
        cached = self._policies.get(tenant)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    def _policy_sync(self, tenant: str) -> TenantPolicy:
        """The tenant's effective policy, from the local copy while it is fresh."""
        pol = self._cached_policy(tenant)
        if pol is None:
            pol = self._cache_policy(tenant, self._store.read_policy(tenant))
        return pol

    async def _policy_async(self, store: AsyncStore, tenant: str) -> TenantPolicy:
        pol = self._cached_policy(tenant)
        if pol is None:
            pol = self._cache_policy(tenant, await store.read_policy(tenant))
        return pol

    def get_policy(self, tenant: str) -> TenantPolicy:
        """The tenant's effective policy, read from Redis now (code defaults overlaid
        with the tenant's stored overrides). Fields the tenant set count as set.

        Raises:
            BackendUnavailableError: Redis failed (administration calls do not fail open).
        """
        try:
            return self._cache_policy(tenant, self._store.read_policy(tenant))
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc

    def set_policy(
        self, tenant: str, policy: TenantPolicy | None = None, **changes: Any
    ) -> TenantPolicy:
        """Store a tenant's policy overrides in Redis; every process applies them within
        ``policy_refresh`` seconds (this one at once). The change is audited.

        Args:
            tenant: whose policy.
            policy: the overrides (the fields set on it explicitly); ``None`` keeps the
                tenant's current overrides.
            **changes: fields to change on top, e.g. ``semantic="shadow"``.

        Returns:
            The tenant's new effective policy.

        Raises:
            ConfigurationError: an invalid field or value.
            BackendUnavailableError: Redis failed.
        """
        try:
            raw = self._store.read_policy(tenant)
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        try:  # only what is stored can be a corrupt stored policy ...
            old = parse_stored(raw) or {}
            make_policy(**old)
        except ValueError as exc:
            raise ConfigurationError(f"the stored policy of {tenant!r} is invalid: {exc}") from exc
        base = old if policy is None else policy.overrides()
        new = make_policy(**{**base, **changes}).overrides()  # ... bad input says so itself
        check_overrides(self.config, new)
        try:
            return self._write_policy_sync(tenant, old, new, "set", None)
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc

    def reset_policy(self, tenant: str) -> TenantPolicy:
        """Drop a tenant's overrides: the code defaults apply again (audited)."""
        try:
            old = parse_stored(self._store.read_policy(tenant)) or {}
            self._store.delete_policy(tenant)
            self._audit_sync(tenant, "reset", old, {}, None)
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        return self._cache_policy(tenant, None)

    def policies(self) -> dict[str, TenantPolicy]:
        """Every tenant that has stored overrides, with its effective policy."""
        try:
            stored = self._store.all_policies()
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        out = {}
        for raw_tenant, raw in stored.items():
            tenant = raw_tenant.decode("utf-8", "surrogatepass")
            out[tenant] = self._cache_policy(tenant, raw)
        return dict(sorted(out.items()))

    def _policy_document(self, overrides: dict[str, Any]) -> str:
        return json.dumps({**overrides, "updated_at": self._clock()}, sort_keys=True)

    def _audit_fields(
        self,
        tenant: str,
        action: str,
        old: dict[str, Any],
        new: dict[str, Any],
        evidence: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "at": repr(self._clock()),
            "tenant": tenant.encode("utf-8", "surrogatepass"),
            "action": action,
            "old": json.dumps(old, sort_keys=True),
            "new": json.dumps(new, sort_keys=True),
            "evidence": json.dumps(evidence or {}, sort_keys=True),
        }

    def _audit_sync(
        self,
        tenant: str,
        action: str,
        old: dict[str, Any],
        new: dict[str, Any],
        evidence: dict[str, Any] | None,
    ) -> None:
        self._store.add_audit(self._audit_fields(tenant, action, old, new, evidence))

    def _write_policy_sync(
        self,
        tenant: str,
        old: dict[str, Any],
        new: dict[str, Any],
        action: str,
        evidence: dict[str, Any] | None,
    ) -> TenantPolicy:
        self._store.write_policy(tenant, self._policy_document(new))
        self._audit_sync(tenant, action, old, new, evidence)
        return self._cache_policy(tenant, json.dumps(new))

    async def _write_policy_async(
        self,
        store: AsyncStore,
        tenant: str,
        old: dict[str, Any],
        new: dict[str, Any],
        action: str,
        evidence: dict[str, Any] | None,
    ) -> TenantPolicy:
        await store.write_policy(tenant, self._policy_document(new))
        await store.add_audit(self._audit_fields(tenant, action, old, new, evidence))
        return self._cache_policy(tenant, json.dumps(new))

    def audit_log(self, tenant: str | None = None, count: int = 100) -> list[dict[str, Any]]:
        """Policy changes, newest first: when, tenant, action, old, new, evidence.

        Args:
            tenant: only this tenant's changes.
            count: how many of the newest records to read (before filtering by tenant).
        """
        try:
            records = self._store.read_audit(count)
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        out = []
        for r in records:
            item = {
                "id": r["id"],
                "at": float(r["at"]),
                "tenant": r["tenant"].decode("utf-8", "surrogatepass"),
                "action": r["action"].decode(),
                "old": json.loads(r["old"]),
                "new": json.loads(r["new"]),
                "evidence": json.loads(r["evidence"]),
            }
            if tenant is None or item["tenant"] == tenant:
                out.append(item)
        return out

    # -- verdicts and calibration -------------------------------------------------------
    @staticmethod
    def _parse_verdicts(records: list[dict[str, Any]]) -> list[Verdict]:
        out = []
        for r in records:
            try:
                out.append(
                    Verdict(
                        similarity=float(r["s"]),
                        agreed=r["a"] in (b"1", "1"),
                        at=float(r["t"]),
                        candidate=r["c"].decode() if isinstance(r.get("c"), bytes) else None,
                        guarded=r.get("g") in (b"1", "1"),
                    )
                )
            except (KeyError, ValueError):
                continue  # a malformed record is skipped, not fatal
        return out

    def verdicts(self, tenant: str) -> list[Verdict]:
        """The tenant's stored verdicts, oldest first (at most ``verdict_limit``)."""
        try:
            return self._parse_verdicts(self._store.read_verdicts(tenant_digest(tenant)))
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc

    def clear_verdicts(self, tenant: str) -> int:
        """Forget a tenant's verdicts (e.g. after the LLM or the prompt changed)."""
        try:
            return self._store.delete_verdicts(tenant_digest(tenant))
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc

    def _recommend(self, pol: TenantPolicy, verdicts: list[Verdict]) -> Calibration:
        """Calibrate, crediting the judge's measured noise only as far as this tenant's
        own most similar verdicts show it (`calibration.noise_credit`)."""
        declared = float(getattr(self.judge, "false_disagreement", 0.0))
        served = [v for v in verdicts if not v.guarded]  # guarded: never served at any threshold
        guarded = len(verdicts) - len(served)
        return calibration.calibrate(
            served,
            target_error=pol.target_error,
            # min_samples counts all the tenant's verdicts, guarded ones included.
            min_samples=max(1, pol.min_samples - guarded),
            confidence=self.config.confidence,
            false_disagreement=calibration.noise_credit(served, declared),
            false_agreement=float(getattr(self.judge, "false_agreement", 0.0)),
        )

    @staticmethod
    def _promotion(pol: TenantPolicy, cal: Calibration) -> tuple[dict[str, Any], str] | None:
        """The new overrides a calibration applies and the audit action (``promote``:
        shadow to live; ``recalibrate``: a live threshold moves; ``demote``: live back to
        shadow, no threshold holds any more), or ``None`` when nothing changes."""
        old = pol.overrides()
        if cal.threshold is None:
            if pol.semantic == "live" and cal.samples >= cal.min_samples and cal.curve:
                return {**old, "semantic": "shadow"}, "demote"
            return None
        new = {**old, "semantic": "live", "threshold": cal.threshold}
        pt = old.get("promotion_threshold")
        if pt is not None and pt < cal.threshold:
            new["promotion_threshold"] = cal.threshold  # never below the threshold
        if pol.semantic != "live":
            return new, "promote"
        if cal.threshold > pol.threshold or cal.threshold <= pol.threshold - _RECALIBRATE_STEP:
            return new, "recalibrate"
        return None

    def calibrate(self, tenant: str, *, apply: bool | None = None) -> Calibration:
        """Recommend the lowest threshold whose wrong-serve bound stays under the
        tenant's ``target_error`` (Clopper-Pearson, corrected for the judge's measured
        noise; see `semcache_core.calibration`).

        With ``auto_promote`` the engine also runs this by itself, on its own background
        thread, every ``calibrate_every`` new verdicts (never inside a lookup or store).

        Args:
            tenant: whose verdicts.
            apply: store the result (audited): ``promote`` a shadow tenant to live at the
                recommended threshold, ``recalibrate`` a live one to a new threshold, or
                ``demote`` a live one back to shadow when no threshold holds any more.
                Default: the tenant's ``auto_promote``.

        Returns:
            The recommendation and its evidence.

        Raises:
            BackendUnavailableError: Redis failed.

        Example:
            >>> engine.calibrate("acme").threshold
            0.8412
        """
        pol = self.get_policy(tenant)
        cal = self._recommend(pol, self.verdicts(tenant))
        if apply if apply is not None else pol.auto_promote:
            change = self._promotion(pol, cal)
            if change is not None:
                try:
                    self._write_policy_sync(
                        tenant, pol.overrides(), change[0], change[1], cal.evidence()
                    )
                except _REDIS_FAULTS as exc:
                    raise _translate(exc) from exc
        return cal

    async def acalibrate(self, tenant: str, *, apply: bool | None = None) -> Calibration:
        """The async twin of `calibrate`."""
        try:
            store = await self._astore()
            pol = self._cache_policy(tenant, await store.read_policy(tenant))
            verdicts = self._parse_verdicts(await store.read_verdicts(tenant_digest(tenant)))
            cal = self._recommend(pol, verdicts)
            if apply if apply is not None else pol.auto_promote:
                change = self._promotion(pol, cal)
                if change is not None:
                    await self._write_policy_async(
                        store, tenant, pol.overrides(), change[0], change[1], cal.evidence()
                    )
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        return cal

    def _calibrate_in_background(self, tenant: str) -> None:
        """One run of the background calibrator (its thread, sync client)."""
        self.calibrate(tenant)

    def drain_calibration(self, timeout: float = 10.0) -> bool:
        """Wait until the background calibrations that are due have run.

        Args:
            timeout: seconds to wait at most.

        Returns:
            ``False`` when they had not finished in time.
        """
        return self._calibrator.drain(timeout)

    def _park(
        self,
        request: CacheRequest,
        pol: TenantPolicy,
        entry: StoredEntry,
        value: Any,
        similarity: float,
        text_of: TextOf,
        guarded: bool = False,
    ) -> None:
        """Keep a candidate that was not served, to judge it against the fresh answer when
        that is stored: in shadow mode, and in live mode with ``auto_promote`` (so
        calibration keeps learning after promotion)."""
        learning = pol.semantic == "shadow" or (pol.semantic == "live" and pol.auto_promote)
        if not learning or similarity < self.config.shadow_floor:
            return
        try:
            text = text_of(value)
        except Exception as exc:
            self._stats.record_error("judge", request.tenant)
            self._log.error("judge", exc)
            return
        self._ledger.park(
            self._key(request), entry.key, similarity, text, request.question or "", guarded
        )

    def _verdict_fields(self, candidate: PendingCandidate, agreed: bool) -> dict[str, Any]:
        return {
            "s": repr(candidate.similarity),
            "a": "1" if agreed else "0",
            "t": repr(self._clock()),
            "c": candidate.key,
            "j": self.judge.name,
            "g": "1" if candidate.guarded else "0",
        }

    def _note_verdict(self, tenant: str, pol: TenantPolicy) -> None:
        """Count a verdict towards the background calibration (no I/O, no waiting)."""
        if pol.auto_promote and pol.semantic in ("shadow", "live"):
            self._calibrator.note(tenant)

    def _judge_sync(
        self, request: CacheRequest, pol: TenantPolicy, payload: bytes, text: str | None
    ) -> None:
        candidate = self._ledger.take(self._key(request))
        if candidate is None:
            return
        try:
            fresh = text if text is not None else _default_text(payload)
            agreed = self.judge.agree(candidate.question, candidate.text, fresh)
            self._store.add_verdict(
                request.tenant_token,
                self._verdict_fields(candidate, agreed),
            )
            if not agreed and self.config.entry_floors and not candidate.guarded:
                self._store.add_disagreement(
                    candidate.key, candidate.similarity, self.config.floor_evidence, _FLOOR_STEP
                )
            self._count_verdict(request.tenant, agreed)
            self._note_verdict(request.tenant, pol)
        except Exception as exc:
            self._fault("verdict", request, exc)

    async def _judge_async(
        self,
        store: AsyncStore,
        request: CacheRequest,
        pol: TenantPolicy,
        payload: bytes,
        text: str | None,
    ) -> None:
        candidate = self._ledger.take(self._key(request))
        if candidate is None:
            return
        try:
            fresh = text if text is not None else _default_text(payload)
            agreed = await self.judge.aagree(candidate.question, candidate.text, fresh)
            await store.add_verdict(
                request.tenant_token,
                self._verdict_fields(candidate, agreed),
            )
            if not agreed and self.config.entry_floors and not candidate.guarded:
                await store.add_disagreement(
                    candidate.key, candidate.similarity, self.config.floor_evidence, _FLOOR_STEP
                )
            self._count_verdict(request.tenant, agreed)
            self._note_verdict(request.tenant, pol)
        except Exception as exc:
            self._fault("verdict", request, exc)

    def _count_verdict(self, tenant: str, agreed: bool) -> None:
        self._stats.record(tenant, "verdicts")
        self._stats.record(tenant, "verdicts_agreed" if agreed else "verdicts_disagreed")

    # -- lookup -------------------------------------------------------------------------
    @_instrumented("semcache.lookup")
    def lookup(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """Find an answer for ``request``: exact layer first, then semantic, under the
        tenant's policy (`TenantPolicy`).

        Never raises for Redis or embedder faults: those end as `Outcome.ERROR`, which
        callers treat as a miss. A corrupt entry is deleted and counted, then ignored.
        In shadow mode the candidate that is not served is kept for a verdict when the
        fresh answer to the same request is stored.

        Args:
            request: from `request`.
            decode: turns ``(payload, codec)`` into the value to return. It raises
                `SerializationError` for a payload it cannot read (unknown codec, not
                its format): the entry is corrupt, deleted and counted. Any other
                exception (the framework failing to build its objects) ends the lookup
                as `Outcome.ERROR`, counted under ``"decode"``, the entry kept.
                Default: the raw payload bytes.
            text_of: the answer text of a decoded value, for the shadow judge. Default:
                the payload as UTF-8.
            stale: stale-if-error: the LLM just failed for this request. Serve what the
                tenant's policy would serve, entries past their TTL included (within
                ``stale_grace``); the result has ``stale=True`` and is counted as
                ``stale_served``/``stale_missed``, not as another request.

        With ``coalesce`` on, concurrent identical misses wait (at most
        ``coalesce_wait`` seconds) for the first one's answer to be stored, then look
        up again: one LLM call instead of N.
        """
        coalescer = self._coalescer
        if coalescer is None or stale:
            return self._lookup_once(request, decode, text_of=text_of, stale=stale)
        token = _RECORD.set(False)
        try:
            first = self._lookup_once(request, decode, text_of=text_of)
        finally:
            _RECORD.reset(token)
        if first.outcome not in (Outcome.MISS, Outcome.SHADOW_HIT):
            self._record(request, first)
            return first
        client = self._store.client if self.config.coalesce == "redis" else None
        ticket = coalescer.begin(self._key(request), client)
        if ticket.leader:
            self._record(request, first)
            return first
        coalescer.join(ticket, client)
        return self._lookup_once(request, decode, text_of=text_of)

    @_ainstrumented("semcache.lookup")
    async def alookup(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """The async twin of `lookup` (redis.asyncio, the embedder's async method)."""
        coalescer = self._coalescer
        if coalescer is None or stale:
            return await self._alookup_once(request, decode, text_of=text_of, stale=stale)
        token = _RECORD.set(False)
        try:
            first = await self._alookup_once(request, decode, text_of=text_of)
        finally:
            _RECORD.reset(token)
        if first.outcome not in (Outcome.MISS, Outcome.SHADOW_HIT):
            self._record(request, first)
            return first
        client = (await self._astore()).client if self.config.coalesce == "redis" else None
        ticket = await coalescer.abegin(self._key(request), client)
        if ticket.leader:
            self._record(request, first)
            return first
        await coalescer.ajoin(ticket, client)
        return await self._alookup_once(request, decode, text_of=text_of)

    def _record(self, request: CacheRequest, result: LookupResult) -> None:
        """Count a lookup whose recording was held back (coalescing)."""
        self._stats.record_lookup(
            request.tenant, result.outcome, result.seconds, result.similarity
        )
        if result.tokens_saved or result.cost_saved_usd:
            self._stats.record_saved(request.tenant, result.tokens_saved, result.cost_saved_usd)

    def _lookup_once(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """One pass of `lookup` (a coalesced waiter makes a second one)."""
        started = time.perf_counter()
        decode = decode or _identity
        if not self._breaker.allow():
            return self._result(request, Outcome.BYPASS, started, stale=stale)
        store = self._store
        try:
            self.setup()
            pol = self._policy_sync(request.tenant)
            key = self._key(request)
            if pol.exact:
                tier = None if stale else self._l1_tier()
                fields = tier.get(key) if tier is not None else None
                from_l1 = fields is not None
                since = tier.version if tier is not None else 0  # before the read
                if fields is None:
                    fields = store.read(key)
                if fields is not None:
                    try:
                        found = self._accept(request, key, fields, decode, stale=stale)
                    except CorruptEntry as exc:
                        self._corrupt(request, key, exc)
                        store.unlink([key])
                        self._l1_drop_sync([key])
                        found = None
                    if found is not None:
                        entry, value = found
                        if tier is not None and not from_l1:
                            self._l1_put(tier, key, fields, entry, since)
                        expires = None if stale else self._slide(entry)
                        if expires is not None and entry.ttl is not None:
                            store.touch(key, entry.ttl, expires)
                        self._breaker.record_success()
                        return self._result(
                            request, Outcome.EXACT_HIT, started, entry, value, 1.0, stale
                        )
            vector = self._embed_sync(request, pol)
            if vector is None:
                self._breaker.record_success()
                return self._result(request, Outcome.MISS, started, stale=stale)
            candidates: list[tuple[StoredEntry, Any]] = []
            for key, fields in store.search(
                request.partition, vector, self.config.search_candidates
            ):
                try:
                    found = self._accept(
                        request, key, fields, decode, fields.get("distance"), stale
                    )
                except CorruptEntry as exc:
                    self._corrupt(request, key, exc)
                    store.unlink([key])
                    continue
                if found is not None:
                    candidates.append(found)
            refused: tuple[StoredEntry, Any, Verification] | None = None
            for entry, value in candidates:
                outcome = self._candidate_outcome(pol, entry)
                if outcome == Outcome.MISS:
                    continue
                check = self._verify_sync(request, pol, outcome, entry)
                if not check.ok:
                    refused = refused or (entry, value, check)
                    continue
                outcome = self._decide(
                    request, pol, outcome, entry, value, text_of, park=not stale
                )
                if outcome in (Outcome.SEMANTIC_HIT, Outcome.PROMOTED) and not stale:
                    expires = self._slide(entry)
                    if expires is not None and entry.ttl is not None:
                        store.touch(entry.key, entry.ttl, expires)
                self._breaker.record_success()
                return self._semantic_result(request, outcome, started, entry, value, stale)
            self._breaker.record_success()
            return self._no_candidate(request, pol, candidates, refused, text_of, started, stale)
        except DecodeFailed as exc:
            self._breaker.record_success()  # Redis answered; the decoder failed
            self._fault("decode", request, exc)
            return self._result(request, Outcome.ERROR, started, stale=stale)
        except Exception as exc:
            self._fault("lookup", request, exc)
            return self._result(request, Outcome.ERROR, started, stale=stale)

    async def _alookup_once(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """One pass of `alookup`."""
        started = time.perf_counter()
        decode = decode or _identity
        if not self._breaker.allow():
            return self._result(request, Outcome.BYPASS, started, stale=stale)
        try:
            store = await self._astore()
            await self.asetup()
            pol = await self._policy_async(store, request.tenant)
            key = self._key(request)
            if pol.exact:
                tier = None if stale else self._l1_tier()
                fields = tier.get(key) if tier is not None else None
                from_l1 = fields is not None
                since = tier.version if tier is not None else 0  # before the read
                if fields is None:
                    fields = await store.read(key)
                if fields is not None:
                    try:
                        found = self._accept(request, key, fields, decode, stale=stale)
                    except CorruptEntry as exc:
                        self._corrupt(request, key, exc)
                        await store.unlink([key])
                        await self._l1_drop_async(store, [key])
                        found = None
                    if found is not None:
                        entry, value = found
                        if tier is not None and not from_l1:
                            self._l1_put(tier, key, fields, entry, since)
                        expires = None if stale else self._slide(entry)
                        if expires is not None and entry.ttl is not None:
                            await store.touch(key, entry.ttl, expires)
                        self._breaker.record_success()
                        return self._result(
                            request, Outcome.EXACT_HIT, started, entry, value, 1.0, stale
                        )
            vector = await self._embed_async(request, pol)
            if vector is None:
                self._breaker.record_success()
                return self._result(request, Outcome.MISS, started, stale=stale)
            candidates: list[tuple[StoredEntry, Any]] = []
            for key, fields in await store.search(
                request.partition, vector, self.config.search_candidates
            ):
                try:
                    found = self._accept(
                        request, key, fields, decode, fields.get("distance"), stale
                    )
                except CorruptEntry as exc:
                    self._corrupt(request, key, exc)
                    await store.unlink([key])
                    continue
                if found is not None:
                    candidates.append(found)
            refused: tuple[StoredEntry, Any, Verification] | None = None
            for entry, value in candidates:
                outcome = self._candidate_outcome(pol, entry)
                if outcome == Outcome.MISS:
                    continue
                check = await self._verify_async(request, pol, outcome, entry)
                if not check.ok:
                    refused = refused or (entry, value, check)
                    continue
                outcome = self._decide(
                    request, pol, outcome, entry, value, text_of, park=not stale
                )
                if outcome in (Outcome.SEMANTIC_HIT, Outcome.PROMOTED) and not stale:
                    expires = self._slide(entry)
                    if expires is not None and entry.ttl is not None:
                        await store.touch(entry.key, entry.ttl, expires)
                self._breaker.record_success()
                return self._semantic_result(request, outcome, started, entry, value, stale)
            self._breaker.record_success()
            return self._no_candidate(request, pol, candidates, refused, text_of, started, stale)
        except DecodeFailed as exc:
            self._breaker.record_success()  # Redis answered; the decoder failed
            self._fault("decode", request, exc)
            return self._result(request, Outcome.ERROR, started, stale=stale)
        except Exception as exc:
            self._fault("lookup", request, exc)
            return self._result(request, Outcome.ERROR, started, stale=stale)

    def _candidate_outcome(self, pol: TenantPolicy, entry: StoredEntry) -> Outcome:
        return policy.semantic_outcome(
            entry.similarity,
            pol.semantic,
            pol.threshold,
            pol.promotion_threshold,
            entry.min_similarity,
        )

    def _decide(
        self,
        request: CacheRequest,
        pol: TenantPolicy,
        outcome: Outcome,
        entry: StoredEntry,
        value: Any,
        text_of: TextOf | None,
        *,
        park: bool = True,
    ) -> Outcome:
        """Park a shadow candidate that is not served, for its verdict; returns the
        outcome to apply (a live hit drawn as an audit sample is judged, not served)."""
        if (
            outcome == Outcome.SEMANTIC_HIT
            and pol.auto_promote
            and park
            and self._audit_rng.random() < self.config.audit_rate
        ):
            outcome = Outcome.SHADOW_HIT  # an audit sample: judged, not served
        served = outcome in (Outcome.SEMANTIC_HIT, Outcome.PROMOTED)
        if park and not served and entry.similarity is not None:
            self._park(request, pol, entry, value, entry.similarity, text_of or _default_text)
        return outcome

    def _no_candidate(
        self,
        request: CacheRequest,
        pol: TenantPolicy,
        candidates: list[tuple[StoredEntry, Any]],
        refused: tuple[StoredEntry, Any, Verification] | None,
        text_of: TextOf | None,
        started: float,
        stale: bool,
    ) -> LookupResult:
        """Nothing to serve: ``guarded`` if the verifier refused a near candidate, else a
        miss (the nearest candidate, if any, is still measured and, in shadow mode,
        parked for a verdict)."""
        if refused is not None:
            entry, value, check = refused
            if not stale and entry.similarity is not None:
                # Judged like any shadow candidate, marked guarded: it measures the
                # verifier, and calibration leaves it out.
                text = text_of or _default_text
                self._park(request, pol, entry, value, entry.similarity, text, guarded=True)
            return self._result(
                request,
                Outcome.GUARDED,
                started,
                similarity=entry.similarity,
                stale=stale,
                guard=check.reason or "verifier",
                guarded_key=entry.key,
            )
        if not candidates:
            return self._result(request, Outcome.MISS, started, stale=stale)
        entry, value = candidates[0]
        self._decide(request, pol, Outcome.MISS, entry, value, text_of, park=not stale)
        return self._result(
            request, Outcome.MISS, started, similarity=entry.similarity, stale=stale
        )

    def _verification_limit(self, pol: TenantPolicy, outcome: Outcome) -> float:
        if outcome == Outcome.PROMOTED and pol.promotion_threshold is not None:
            return pol.promotion_threshold
        return pol.threshold

    def _precheck(
        self, request: CacheRequest, pol: TenantPolicy, outcome: Outcome, entry: StoredEntry
    ) -> Verification | None:
        """The checks before the verifier runs: a decided answer, or ``None``."""
        if not entry.question or request.question is None:
            return Verification(False, "no_question")
        if self._verification_limit(pol, outcome) + policy.SIMILARITY_EPSILON >= 1.0:
            # threshold=1.0 means identical questions only, whatever the vectors say.
            same = " ".join(request.question.split()) == " ".join(entry.question.split())
            return Verification(True) if same else Verification(False, "identical_only")
        return None

    def _verify_failed(self, request: CacheRequest, exc: Exception) -> Verification:
        self._stats.record_error("verify", request.tenant)
        self._log.error("verify", exc)
        return Verification(False, "error")

    def _verify_sync(
        self, request: CacheRequest, pol: TenantPolicy, outcome: Outcome, entry: StoredEntry
    ) -> Verification:
        decided = self._precheck(request, pol, outcome, entry)
        if decided is not None:
            return decided
        assert request.question is not None and entry.question is not None
        try:
            return self.verifier.verify(request.question, entry.question)
        except Exception as exc:
            return self._verify_failed(request, exc)

    async def _verify_async(
        self, request: CacheRequest, pol: TenantPolicy, outcome: Outcome, entry: StoredEntry
    ) -> Verification:
        decided = self._precheck(request, pol, outcome, entry)
        if decided is not None:
            return decided
        assert request.question is not None and entry.question is not None
        try:
            return await self.verifier.averify(request.question, entry.question)
        except Exception as exc:
            return self._verify_failed(request, exc)

    def _semantic_result(
        self,
        request: CacheRequest,
        outcome: Outcome,
        started: float,
        entry: StoredEntry,
        value: Any,
        stale: bool = False,
    ) -> LookupResult:
        served = outcome in (Outcome.SEMANTIC_HIT, Outcome.PROMOTED)
        shown = entry if served or outcome == Outcome.SHADOW_HIT else None
        return self._result(
            request,
            outcome,
            started,
            shown,
            value if served else None,
            entry.similarity,
            stale,
        )

    def _corrupt(self, request: CacheRequest, key: str, exc: Exception) -> None:
        self._stats.record(request.tenant, "corrupt")
        logger.warning("semcache: deleting corrupt entry %s: %s", key, exc)

    def _wants_vector(self, request: CacheRequest, pol: TenantPolicy) -> bool:
        if pol.semantic == "off" or self.embedder is None or request.question is None:
            return False
        if request.kind and request.kind in self.config.exact_only_kinds:
            return False
        return self._fits_window(request.question)

    def _fits_window(self, question: str) -> bool:
        """A question the embedder would cut off is exact-only: two long prompts that
        differ past the cut would embed the same."""
        if self._window is None:
            return True
        max_tokens, count = self._window
        if len(question) + 2 <= max_tokens:
            return True  # a token is at least one character
        try:
            return count(question) <= max_tokens
        except Exception:
            return False

    def _embed_sync(self, request: CacheRequest, pol: TenantPolicy) -> bytes | None:
        if not self._wants_vector(request, pol):
            return None
        assert self.embedder is not None and request.question is not None
        try:
            vector = self.embedder.embed(request.question)
        except Exception as exc:
            self._stats.record_error("embed", request.tenant)
            self._log.error("embed", exc)
            return None
        return self._vector_bytes(vector)

    async def _embed_async(self, request: CacheRequest, pol: TenantPolicy) -> bytes | None:
        if not self._wants_vector(request, pol):
            return None
        assert self.embedder is not None and request.question is not None
        try:
            vector = await self.embedder.aembed(request.question)
        except Exception as exc:
            self._stats.record_error("embed", request.tenant)
            self._log.error("embed", exc)
            return None
        return self._vector_bytes(vector)

    def _vector_bytes(self, vector: Sequence[float]) -> bytes:
        if self._dims is not None and len(vector) != self._dims:
            raise ConfigurationError(
                f"the embedder returned {len(vector)} dimensions but the index has "
                f"{self._dims}; use the embedding model the index was built with"
            )
        return vector_bytes(vector, self.config.datatype)

    # -- store --------------------------------------------------------------------------
    def _store_ttl(self, request: CacheRequest, pol: TenantPolicy) -> tuple[bool, float | None]:
        """Whether to write at all (TTL 0 means no), and the entry's TTL."""
        ttl = policy.resolve_ttl(request.ttl, pol.ttl)
        if not policy.should_store(ttl):
            self._stats.record(request.tenant, "stores_skipped")
            return False, None
        return True, ttl

    @_instrumented("semcache.store")
    def store(
        self,
        request: CacheRequest,
        payload: bytes,
        *,
        codec: str = "bytes",
        text: str | None = None,
        usage: Usage | None = None,
    ) -> bool:
        """Write ``payload`` as the answer to ``request`` (both layers, one write).

        Never raises for Redis or embedder faults: the write is skipped and counted. If
        the lookup of this request shadowed a candidate, the judge compares it with this
        answer and the verdict is recorded.

        Args:
            request: the request that missed.
            payload: the serialized answer.
            codec: names the payload format, handed back to ``decode`` on lookup.
            text: the answer's text, for the shadow judge (default: the payload as UTF-8).
            usage: the call's token usage and model; a hit on this entry then counts
                the tokens and dollars it saved.

        Returns:
            True if the entry was written.
        """
        key = self._key(request)
        try:
            return self._store_once(request, payload, codec=codec, text=text, usage=usage)
        finally:
            # Whether written, skipped or failed: other processes' L1 copies of the key
            # are stale, and the key's coalesced waiters may look again.
            # Written, skipped or failed: this process's L1 copy is stale (other
            # processes hear it from the write itself), and the key's coalesced waiters
            # may look again.
            if self._l1 is not None:
                self._l1.drop(key)
            if self._coalescer is not None:
                client = self._store.client if self.config.coalesce == "redis" else None
                self._coalescer.finish(key, client)

    def _store_once(
        self,
        request: CacheRequest,
        payload: bytes,
        *,
        codec: str = "bytes",
        text: str | None = None,
        usage: Usage | None = None,
    ) -> bool:
        if not self._breaker.allow_write():
            self._stats.record(request.tenant, "stores_skipped")
            return False
        try:
            self.setup()
            pol = self._policy_sync(request.tenant)
            write, ttl = self._store_ttl(request, pol)
            if write:
                vector = self._embed_sync(request, pol)
                fields = entry_fields(
                    request,
                    payload=payload,
                    codec=codec,
                    vector=vector,
                    now=self._clock(),
                    ttl=ttl,
                    usage=usage.to_json() if usage is not None else None,
                )
                self._store.write(self._key(request), fields, ttl, self._announce(request))
        except Exception as exc:
            # Redis refusing a write (OOM under noeviction, a read-only replica) answers
            # at once and says nothing about reads: it must not open the breaker.
            self._fault("store", request, exc, breaker=not isinstance(exc, redis.ResponseError))
            return False
        self._breaker.record_success()
        self._judge_sync(request, pol, payload, text)
        if write:
            self._stats.record(request.tenant, "stores")
        return write

    @_ainstrumented("semcache.store")
    async def astore(
        self,
        request: CacheRequest,
        payload: bytes,
        *,
        codec: str = "bytes",
        text: str | None = None,
        usage: Usage | None = None,
    ) -> bool:
        """The async twin of `store`."""
        key = self._key(request)
        try:
            return await self._astore_once(request, payload, codec=codec, text=text, usage=usage)
        finally:
            if self._l1 is not None:
                self._l1.drop(key)
            if self._coalescer is not None:
                client = (await self._astore()).client if self.config.coalesce == "redis" else None
                await self._coalescer.afinish(key, client)

    async def _astore_once(
        self,
        request: CacheRequest,
        payload: bytes,
        *,
        codec: str = "bytes",
        text: str | None = None,
        usage: Usage | None = None,
    ) -> bool:
        if not self._breaker.allow_write():
            self._stats.record(request.tenant, "stores_skipped")
            return False
        try:
            store = await self._astore()
            await self.asetup()
            pol = await self._policy_async(store, request.tenant)
            write, ttl = self._store_ttl(request, pol)
            if write:
                vector = await self._embed_async(request, pol)
                fields = entry_fields(
                    request,
                    payload=payload,
                    codec=codec,
                    vector=vector,
                    now=self._clock(),
                    ttl=ttl,
                    usage=usage.to_json() if usage is not None else None,
                )
                await store.write(self._key(request), fields, ttl, self._announce(request))
        except Exception as exc:
            # Redis refusing a write (OOM under noeviction, a read-only replica) answers
            # at once and says nothing about reads: it must not open the breaker.
            self._fault("store", request, exc, breaker=not isinstance(exc, redis.ResponseError))
            return False
        self._breaker.record_success()
        await self._judge_async(store, request, pol, payload, text)
        if write:
            self._stats.record(request.tenant, "stores")
        return write

    # -- invalidation -------------------------------------------------------------------
    def _invalidation_filter(
        self,
        tenant: str | None,
        tags: Sequence[str] | None,
        match: str,
        scope: Mapping[str, Any] | None,
        older_than: float | None,
    ) -> str:
        if match not in ("any", "all"):
            raise ConfigurationError(f"match must be 'any' or 'all', got {match!r}")
        clauses = []
        if tenant is not None:
            check_tenant_id(tenant)
            clauses.append(query.tag_any("tenant", [tenant_digest(tenant)]))
        if scope is not None:
            clauses.append(query.tag_any("scope", [scope_digest(scope)]))
        if tags:
            tokens = [tag_digest(t) for t in tags]
            build = query.tag_any if match == "any" else query.tag_all
            clauses.append(build("tags", tokens))
        if older_than is not None:
            if older_than < 0:
                raise ConfigurationError("older_than must be >= 0 seconds")
            clauses.append(query.numeric_below("created_at", self._clock() - older_than))
        if not clauses:
            raise ConfigurationError(
                "say what to invalidate: tenant=, tags=, scope=, older_than=, or everything=True"
            )
        return query.conjunction(clauses)

    def invalidate(
        self,
        *,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        match: str = "any",
        scope: Mapping[str, Any] | None = None,
        older_than: float | None = None,
        everything: bool = False,
    ) -> int:
        """Delete entries: criteria combine with AND; ``everything`` clears the namespace.

        Entries are found with FT.SEARCH (or SCAN for ``everything``) and removed with
        UNLINK in batches; never KEYS, never FLUSHDB.

        Args:
            tenant: only this tenant's entries.
            tags: entries carrying any (``match="any"``) or all (``"all"``) of these tags.
            scope: entries written with exactly this scope (as built by an adapter).
            older_than: entries written more than this many seconds ago.
            everything: every entry of this namespace, all tenants.

        Returns:
            How many entries were deleted.

        Raises:
            ConfigurationError: no criterion given, or bad arguments.
            BackendUnavailableError: Redis failed (administration calls do not fail open).
        """
        try:
            if everything:
                removed = self._store.delete_scan(self.layout.scan_pattern())
            else:
                expr = self._invalidation_filter(tenant, tags, match, scope, older_than)
                self.setup()
                removed = self._store.delete_matching(expr)
            only_tenant = tenant is not None and not (tags or scope or older_than is not None)
            self._l1_after_invalidate(tenant, only_tenant and not everything)
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        self._stats.record_invalidated(removed)
        return removed

    async def ainvalidate(
        self,
        *,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        match: str = "any",
        scope: Mapping[str, Any] | None = None,
        older_than: float | None = None,
        everything: bool = False,
    ) -> int:
        """The async twin of `invalidate`."""
        try:
            store = await self._astore()
            if everything:
                removed = await store.delete_scan(self.layout.scan_pattern())
            else:
                expr = self._invalidation_filter(tenant, tags, match, scope, older_than)
                await self.asetup()
                removed = await store.delete_matching(expr)
            only_tenant = tenant is not None and not (tags or scope or older_than is not None)
            await self._al1_after_invalidate(store, tenant, only_tenant and not everything)
        except _REDIS_FAULTS as exc:
            raise _translate(exc) from exc
        self._stats.record_invalidated(removed)
        return removed

    # -- introspection ------------------------------------------------------------------
    def report_error(
        self, operation: str, exc: BaseException, *, tenant: str | None = None
    ) -> None:
        """Count and log (rate-limited) a fault an adapter met, e.g. a serialization error."""
        self._fault(operation, None, exc)
        if tenant is not None:
            self._stats.record(tenant, "errors")

    def _maybe_flush_sync(self, force: bool = False) -> None:
        pending = self._pending
        if pending is None or not (force or pending.due(self.config.stats_flush_interval)):
            return
        if not self._breaker.allow_write():
            return  # Redis is failing: keep counting in memory
        try:
            flush_sync(self._store.client, self.config.key_prefix, self.config.namespace, pending)
        except Exception as exc:
            # Bookkeeping: a refused write (OOM) must not pause the cache's own writes.
            self._fault("stats", None, exc, breaker=not isinstance(exc, redis.ResponseError))

    async def _maybe_flush_async(self) -> None:
        pending = self._pending
        if pending is None or not pending.due(self.config.stats_flush_interval):
            return
        if not self._breaker.allow_write():
            return
        try:
            store = await self._astore()
            await flush_async(store.client, self.config.key_prefix, self.config.namespace, pending)
        except Exception as exc:
            self._fault("stats", None, exc, breaker=not isinstance(exc, redis.ResponseError))

    def stats(self, tenant: str | None = None, *, totals: bool = True) -> dict[str, Any]:
        """Counters: this process's, and the totals persisted in Redis.

        ``stats()["tenants"]`` counts what this process did: per tenant, lookups by
        outcome (``exact_hits``, ``semantic_hits``, ``promoted``, ``shadow_hits``,
        ``misses`` (shadow hits are counted apart, in ``shadow_hits``), ``bypassed``),
        ``errors``, ``stores``, verdicts, ``tokens_saved``, ``cost_saved_usd``,
        ``hit_rate``. ``stats()["totals"]`` has the same fields summed over every
        process and restart (persisted in Redis), plus ``entries`` per tenant, and
        ``stats()["index"]`` the index's size and memory. When Redis is unreachable,
        ``totals`` is ``None`` and ``totals_error`` says why.

        Args:
            tenant: only this tenant.
            totals: also read the persisted totals (one flush and a few reads).
        """
        snap = self._local_snapshot(tenant)
        if totals and self._pending is not None:
            self._maybe_flush_sync(force=True)
            try:
                raw = read_totals(
                    self._store.client, self.config.key_prefix, self.config.namespace, tenant
                )
                snap["totals"] = {t: summarize(c) for t, c in raw.items()}
                snap["index"] = _index_summary(self._store.index_info())
                for t, view in snap["totals"].items():
                    view["entries"] = self._entries_of(t)
            except Exception as exc:
                snap["totals"] = None
                snap["totals_error"] = str(_translate(exc, self.config.redis_url))
        return snap

    async def astats(self, tenant: str | None = None, *, totals: bool = True) -> dict[str, Any]:
        """The async twin of `stats` (redis.asyncio; the event loop is never blocked)."""
        snap = self._local_snapshot(tenant)
        if totals and self._pending is not None:
            try:
                store = await self._astore()
                if self._breaker.allow_write():
                    await flush_async(
                        store.client, self.config.key_prefix, self.config.namespace, self._pending
                    )
                raw = await aread_totals(
                    store.client, self.config.key_prefix, self.config.namespace, tenant
                )
                snap["totals"] = {t: summarize(c) for t, c in raw.items()}
                snap["index"] = _index_summary(await store.index_info())
                for t, view in snap["totals"].items():
                    view["entries"] = await self._aentries_of(store, t)
            except Exception as exc:
                snap["totals"] = None
                snap["totals_error"] = str(_translate(exc, self.config.redis_url))
        return snap

    def _local_snapshot(self, tenant: str | None) -> dict[str, Any]:
        """This process's counters (no I/O)."""
        snap = self._stats.snapshot(tenant)
        snap["breaker"] = self._breaker.state.value
        snap["embedder_calls"] = (
            self.embedder.calls if isinstance(self.embedder, CachedEmbedder) else 0
        )
        inner = getattr(self.embedder, "inner", None)
        if isinstance(inner, MicroBatcher):
            snap["embed_batches"] = {"calls": inner.calls, "batches": inner.batches}
        if self._l1 is not None:
            snap["l1"] = dataclasses.asdict(self._l1.stats())
        if self._coalescer is not None:
            local = self._coalescer.local
            snap["coalesce"] = {
                "leaders": local.leaders,
                "waiters": local.waiters,
                "timeouts": local.timeouts,
                "takeovers": local.takeovers,
                "errors": self._coalescer.errors,
            }
        return snap

    async def _aentries_of(self, store: AsyncStore, tenant: str) -> int:
        try:
            return int(await store.count(query.tag_any("tenant", [tenant_digest(tenant)])))
        except redis.ResponseError as exc:
            if is_missing_index(exc):
                return 0
            raise

    def _entries_of(self, tenant: str) -> int:
        """Entries of one tenant; 0 when the index is gone (dropped, or Redis emptied)."""
        try:
            return int(self._store.count(query.tag_any("tenant", [tenant_digest(tenant)])))
        except redis.ResponseError as exc:
            if is_missing_index(exc):
                return 0
            raise

    def count(self, tenant: str | None = None) -> int:
        """How many entries the index holds (for one tenant, or all)."""
        self.setup()
        expr = query.tag_any("tenant", [tenant_digest(tenant)]) if tenant else "*"
        return self._store.count(expr)

    def close(self) -> None:
        """Stop the background calibrator, write pending counters, stop the L1 subscriber,
        close the sync connection pool."""
        self._calibrator.close()
        self._maybe_flush_sync(force=True)
        if self._l1_sub is not None:
            self._l1_sub.stop()
            self._l1_sub = None
        self._store.close()

    async def aclose(self) -> None:
        """Close the async connection pool of the running event loop.

        Optional: a loop closed by ``asyncio.run`` (or ``asyncio.Runner``) closes its
        pool itself.
        """
        entry = self._async_stores.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()


async def _close_at_loop_shutdown(store: AsyncStore, *, own: bool) -> AsyncGenerator[None, None]:
    """Parked at its first ``yield`` for the life of an event loop. The loop finalizes
    it in ``shutdown_asyncgens()``, so the pool is closed inside its own loop, before
    the loop closes, even when the user never calls `CacheEngine.aclose`."""
    try:
        yield
    finally:
        if own:
            await store.close()


def _index_summary(info: Any) -> dict[str, Any]:
    """Entries and memory of the index from FT.INFO (``None``: no index)."""
    if info is None:
        return {"entries": 0, "memory_mb": 0.0}
    if isinstance(info, dict):
        pairs = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in info.items()}
    else:
        pairs = {
            (info[i].decode() if isinstance(info[i], bytes) else str(info[i])): info[i + 1]
            for i in range(0, len(info) - 1, 2)
        }

    def num(name: str) -> float:
        value = pairs.get(name)
        try:
            return float(value.decode() if isinstance(value, bytes) else value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0

    # total_index_memory_sz_mb leaves the vector index out (RediSearch 2.10).
    memory = num("total_index_memory_sz_mb") + num("vector_index_sz_mb")
    return {"entries": int(num("num_docs")), "memory_mb": round(memory, 3)}


def _translate(exc: BaseException, url: str | None = None) -> BaseException:
    """Redis errors become ours, so callers catch one family; a Redis without the search
    module gets the fix-it message, not the echoed command."""
    if isinstance(exc, SemcacheError):
        return exc
    if isinstance(exc, redis.ResponseError) and "unknown command 'ft." in str(exc).lower():
        err: SemcacheError = ConfigurationError(
            NO_SEARCH_MODULE.format(url=redacted_url(url) if url else "this address")
        )
    elif isinstance(exc, redis.TimeoutError):
        err = BackendTimeoutError(f"Redis timed out: {exc}")
    elif isinstance(exc, (redis.RedisError, OSError)):
        err = BackendUnavailableError(f"Redis failed: {type(exc).__name__}: {exc}")
    else:
        return exc
    err.__cause__ = exc
    return err
