"""`CacheEngine`: the facade over the exact and semantic layers, sync and async.

The engine builds its parts (`EngineState`, the stores, the drivers) and hands each call
to a driver: ``x`` to the sync one, ``ax`` to the async one. The drivers live in
`_async` (written once) and `_sync` (generated from it); the decisions they apply live
in `core`; every Redis command lives in `storage`. See docs/architecture.md.
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._async.admin import AsyncAdmin
from ._async.cache import AsyncCache
from ._async.coalescing import AsyncCoalescing
from ._sync.admin import SyncAdmin
from ._sync.cache import SyncCache
from ._sync.coalescing import SyncCoalescing
from .admin_calls import AdminCalls
from .calibrator import BackgroundCalibrator
from .config import CacheConfig, build_config, redacted_url
from .core.result import LookupResult, last_lookup, remember_lookup
from .counters import FlushTimer
from .embedding import CachedEmbedder, Embedder, as_embedder, token_window
from .errors import BackendUnavailableError
from .judges import Judge, as_judge, default_judge
from .microbatch import MicroBatcher
from .pricing import PriceTable, Usage
from .prometheus import PrometheusMetrics
from .request import CacheRequest
from .resilience import CircuitBreaker
from .state import Decoder, EngineState, TextOf, approx_tokens
from .storage._async.store import AsyncStore
from .storage._sync.store import SyncStore
from .storage.clients import (
    AsyncClient,
    AsyncStores,
    Client,
    SyncStores,
    adetect_cluster,
    detect_cluster,
    is_cluster_client,
    make_admin_client,
    make_client,
)
from .storage.errors import REDIS_FAULTS
from .storage.layout import Layout, layout_for
from .tenancy import UNSET, _Unset, build_request
from .verifiers import CandidateVerifier, as_verifier

logger = logging.getLogger("semcache")

__all__ = ["CacheEngine", "LookupResult", "last_lookup", "remember_lookup"]


def _topology(
    config: CacheConfig, client: Client | None, aclient: AsyncClient | None
) -> tuple[bool, Exception | None]:
    """Cluster or one node: from the caller's clients, else asked (`detect_cluster`)."""
    if client is not None or aclient is not None:
        return is_cluster_client(client or aclient), None
    return detect_cluster(config)


async def _aprobe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception | None:
    """`CacheEngine.acreate`'s topology question, asked on ``redis.asyncio``: sets
    ``kwargs["cluster"]`` and returns the fault of an unreachable Redis."""
    no_client = kwargs.get("redis_client") is None and kwargs.get("async_redis_client") is None
    if not no_client or kwargs.get("cluster") is not None:
        return None
    settings = {k: v for k, v in kwargs.items() if k in CacheConfig.model_fields}
    if args:
        settings["redis_url"] = args[0]
    kwargs["cluster"], fault = await adetect_cluster(
        build_config(kwargs.get("config"), **settings)
    )
    return fault


def _embedder_for(embedder: Any, config: CacheConfig) -> Embedder | None:
    """The user's embedder, micro-batched (async) and with its LRU of embeddings."""
    if embedder is None:
        return None
    inner = as_embedder(embedder)
    if config.embed_batch_window is not None and not isinstance(inner, MicroBatcher):
        # Given the user's own object: its batch method (``aembed_many``) is found on it,
        # not on the adapter `as_embedder` wraps it in (which has none).
        inner = MicroBatcher(
            embedder, window=config.embed_batch_window, max_batch=config.embed_batch_max
        )
    return CachedEmbedder(inner, config.embedding_cache_size)


def _metrics_for(
    metrics: PrometheusMetrics | bool | None, config: CacheConfig
) -> PrometheusMetrics | None:
    chosen = PrometheusMetrics.get() if metrics is True else metrics or None
    if (
        chosen is not None
        and chosen.tenant_mode == "digest"
        and chosen.digest_key != config.trace_key_bytes
    ):
        logger.warning(
            "semcache: the metrics' tenant digest labels and this engine's spans are "
            "keyed differently (trace_key); pass PrometheusMetrics(trace_key=...) or "
            "set SEMCACHE_TRACE_KEY for both"
        )
    return chosen


def _sync_stores(
    config: CacheConfig, layout: Layout, cluster: bool, client: Client | None
) -> tuple[SyncStore, SyncStore]:
    """The request path's store and the administration calls' (patient and retried, on a
    pool of their own; a caller's client serves both as it is)."""
    store = SyncStore(
        client if client is not None else make_client(config, cluster), layout, config
    )
    if client is not None:
        return store, store
    return store, SyncStore(make_admin_client(config, cluster), layout, config)


def _flush_at_exit(ref: weakref.ReferenceType[CacheEngine]) -> None:
    engine = ref()
    if engine is None or engine._state.pending is None:
        return
    try:
        engine._cache.flush_counts(force=True)
    except Exception:  # exiting: nothing to fail open into
        logger.warning("semcache: could not write pending counts at exit")


def _flush_due(ref: weakref.ReferenceType[CacheEngine]) -> bool:
    """One tick of the flush timer (its thread): write the due counts through the sync
    driver, whichever driver counted them; False once the engine is gone."""
    engine = ref()
    if engine is None:
        return False
    engine._cache.flush_counts(timer=True)
    return True


def _calibrate(ref: weakref.ReferenceType[CacheEngine], tenant: str) -> None:
    """One run of the background calibrator (its thread, the sync driver)."""
    engine = ref()
    if engine is not None:
        engine.calibrate(tenant)


class CacheEngine(AdminCalls):
    """Tenant-isolated exact and semantic cache on Redis.

    Args:
        redis_url: where Redis (with the search module) is; env ``SEMCACHE_REDIS_URL``.
        embedder: a LangChain ``Embeddings``, LlamaIndex ``BaseEmbedding``, RedisVL
            vectorizer or callable. Without one, only the exact layer works. It is never
            called at construction: the index's dims come from ``dims=``, the embedder's
            own ``dims``, an existing index, or the first embedding.
        namespace: one index per namespace; entries never cross namespaces.
        config: a `CacheConfig` to start from; keyword settings override it.
        redis_client: use this redis-py client instead of one built from ``redis_url``.
        async_redis_client: use this ``redis.asyncio`` client for async calls (it must
            only be used from one event loop). By default one is made per event loop.
        validate: connect now and check (or create) the index, so a misconfiguration
            raises here. ``False`` defers all I/O to the first call or `setup`/`asetup`
            (an async app: ``engine = await CacheEngine.acreate(...)``).
        metrics: Prometheus metrics: ``True`` for the default registry, a
            `PrometheusMetrics` (own registry, tenant label), or ``None`` for none.
        prices: model id -> price per million tokens, winning over the maintained
            genai-prices data (the ``prices`` extra), or a `PriceTable`.
        judge: decides whether a shadow candidate agreed with the fresh answer:
            ``"text"``, an `EmbeddingJudge`, or ``(question, candidate, fresh) -> bool``
            (`semcache_core.judges`). Default (`default_judge`): the answer-embedding
            judge at its measured bar with all-MiniLM-L6-v2, else ``"text"``.
        verifier: checks every semantic candidate before it is served: ``None`` (the
            built-in rules at ``verify_strictness``), ``"lenient"``, ``"balanced"``,
            ``"strict"``, or a sync or async callable ``(query_question,
            candidate_question) -> bool | Verification`` (`semcache_core.verifiers`).
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
        redis_client: Client | None = None,
        async_redis_client: AsyncClient | None = None,
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
        self.config = config = build_config(config, **overrides)
        cluster, probe_fault = _topology(config, redis_client, async_redis_client)
        self.cluster = cluster
        self.layout = layout_for(config, cluster)
        self.embedder: Embedder | None = _embedder_for(embedder, config)
        window = token_window(embedder) if embedder is not None else None
        if config.max_question_tokens is not None:
            window = (config.max_question_tokens, window[1] if window else approx_tokens)
        self.judge: Judge = as_judge(judge) if judge is not None else default_judge(self.embedder)
        self.verifier: CandidateVerifier = as_verifier(verifier, config.verify_strictness)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.metrics: PrometheusMetrics | None = _metrics_for(metrics, config)
        self._state = state = EngineState(
            config,
            layout=self.layout,
            embedder=self.embedder,
            judge=self.judge,
            verifier=self.verifier,
            window=window,
            metrics=self.metrics,
            prices=self.prices,
            clock=clock,
        )
        self._store, self._admin_store = _sync_stores(config, self.layout, cluster, redis_client)
        self._async_stores = AsyncStores(config, self.layout, async_redis_client, cluster=cluster)
        flights = state.flights
        self._cache = SyncCache(
            state,
            SyncStores(self._store, self._admin_store),
            SyncCoalescing(flights, time.monotonic) if flights is not None else None,
        )
        self._acache = AsyncCache(
            state,
            self._async_stores,
            AsyncCoalescing(flights, time.monotonic) if flights is not None else None,
        )
        state.coalescers = [c for c in (self._cache.coalescing, self._acache.coalescing) if c]
        self._admin = SyncAdmin(state, self._cache)
        self._aadmin = AsyncAdmin(state, self._acache)
        me = weakref.ref(self)
        state.calibrator = BackgroundCalibrator(
            lambda tenant: _calibrate(me, tenant),
            lambda exc: state.fault("calibrate", None, exc),
            config.calibrate_every,
        )
        # Counts not yet written would be lost when a short script or a notebook exits
        # without close(): write them at interpreter exit (weakly: no leak, no I/O if gone).
        atexit.register(_flush_at_exit, weakref.ref(self))
        # ... and by a process that stops calling: a daemon thread writes them when due.
        # It flushes through the sync client, never the async one: counts are one buffer
        # for both drivers, and HINCRBYs need no event loop (an idle loop runs nothing).
        if state.pending is not None and config.stats_flush_interval > 0:
            state.flush_timer = FlushTimer(
                lambda: _flush_due(me),
                config.stats_flush_interval,
                lambda exc: state.fault("stats", None, exc, breaker=False),
            )
        # Unreachable when asked for its topology: one attempt, not a second one.
        self.probe_fault = probe_fault
        if validate and probe_fault is not None:
            self._setup_failed(probe_fault)
        elif validate:
            self._validate_now()

    @classmethod
    async def acreate(cls, *args: Any, **kwargs: Any) -> CacheEngine:
        """Construct and set up without blocking the event loop (async apps).

        Takes `CacheEngine`'s arguments; raises what `asetup` raises.
        """
        fault = await _aprobe(args, kwargs)
        engine = cls(*args, validate=False, **kwargs)
        if fault is not None:
            engine._setup_failed(fault)
        else:
            await engine._avalidate_now()
        return engine

    def _unreachable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"cannot reach Redis at {redacted_url(self.config.redis_url)} ({exc}). "
            "Start one (`semcache redis` runs an embedded server) or fix redis_url; pass "
            "require_redis=False to start anyway and cache once Redis is back"
        )

    def _validate_now(self) -> None:
        try:
            self.setup()
        except REDIS_FAULTS as exc:
            self._setup_failed(exc)

    async def _avalidate_now(self) -> None:
        try:
            await self.asetup()
        except REDIS_FAULTS as exc:
            self._setup_failed(exc)

    def _setup_failed(self, exc: BaseException) -> None:
        """Redis was unreachable at construction: raise, or warn and start anyway."""
        if self.config.require_redis:
            raise self._unreachable(exc) from exc
        logger.warning(
            "semcache: Redis at %s is unreachable (%s); caching starts when it is back",
            redacted_url(self.config.redis_url),
            exc,
        )

    @property
    def breaker(self) -> CircuitBreaker:
        return self._state.breaker

    @property
    def _dims(self) -> int | None:
        return self._state.dims

    def setup(self) -> None:
        """Connect, check the search module, and check or create the index (sync).

        Raises:
            ConfigurationError: no search module in this Redis.
            SchemaMismatchError: the existing index differs from this configuration.
            BackendUnavailableError: Redis is unreachable (the caller decides).
        """
        with self._state.setup_lock:
            self._cache.setup()

    async def asetup(self) -> None:
        """The async twin of `setup`."""
        await self._acache.setup()

    async def _astore(self) -> AsyncStore:
        """The running event loop's store."""
        return await self._async_stores.get()

    # -- requests ------------------------------------------------------------------------
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
        return build_request(
            self.config, prompt, question, scope, tenant, tags, ttl=ttl, kind=kind
        )

    def key(self, request: CacheRequest) -> str:
        """The Redis key of ``request``'s entry."""
        return self._state.key(request)

    _key = key

    # -- lookup and store ----------------------------------------------------------------
    def lookup(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """Find an answer for ``request``: exact layer first, then semantic (every
        candidate verified), under the tenant's policy (`TenantPolicy`).

        Never raises for Redis or embedder faults: those end as `Outcome.ERROR`, which
        callers treat as a miss. An entry that cannot be read as data is deleted and
        counted; a decoder that fails on readable data is an error and keeps it. In
        shadow mode the candidate that is not served is kept for a verdict when the
        fresh answer to the same request is stored.

        Args:
            request: from `request`.
            decode: turns ``(payload, codec)`` into the value to return; it raises
                `SerializationError` for a payload that is not its data. Default: bytes.
            text_of: the answer text of a decoded value, for the shadow judge.
            stale: stale-if-error: the LLM just failed for this request. Serve what the
                tenant's policy would serve, entries past their TTL included (within
                ``stale_grace``); counted as ``stale_served``/``stale_missed``.

        With ``coalesce`` on, concurrent identical misses wait (at most
        ``coalesce_wait`` seconds) for the first one's answer, then look up again.
        """
        return self._cache.lookup(request, decode, text_of=text_of, stale=stale)

    async def alookup(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """The async twin of `lookup` (redis.asyncio, the embedder's async method)."""
        return await self._acache.lookup(request, decode, text_of=text_of, stale=stale)

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
            usage: the call's token usage and model: hits then count what they saved.

        Returns:
            True if the entry was written.
        """
        return self._cache.store(request, payload, codec=codec, text=text, usage=usage)

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
        return await self._acache.store(request, payload, codec=codec, text=text, usage=usage)

    def abandon(self, result: LookupResult) -> bool:
        """End the coalescing leadership a lookup took: the LLM call its miss led to
        failed, or its answer will not be stored.

        With ``coalesce`` on, the first of concurrent identical misses leads
        (``result.leads``) and the others wait for its store. Without a store they would
        wait ``coalesce_wait`` and then all call the LLM; after ``abandon`` they stop
        waiting at once, one of them leads the next call and the others wait for that
        one, and the leader's Redis lock (``coalesce="redis"``) is deleted instead of
        living out ``coalesce_lease``. The adapters call it themselves (LangChain from
        the run's ``on_llm_error``, the LlamaIndex wrapper when the wrapped call raises).

        Args:
            result: what `lookup` returned for the call that failed.

        Returns:
            True if a leadership was ended; ``False`` for a lookup that took none (a hit,
            coalescing off, a waiter) or one already ended (stored, abandoned, taken over).
            Never raises for Redis faults.
        """
        return self._cache.abandon(result)

    async def aabandon(self, result: LookupResult) -> bool:
        """The async twin of `abandon`."""
        return await self._acache.abandon(result)

    def report_error(
        self, operation: str, exc: BaseException, *, tenant: str | None = None
    ) -> None:
        """Count and log (rate-limited) a fault an adapter met, e.g. a serialization error."""
        self._state.fault(operation, None, exc)
        if tenant is not None:
            self._state.stats.record(tenant, "errors")

    def drain_calibration(self, timeout: float = 10.0) -> bool:
        """Wait until the background calibrations that are due have run; ``False`` when
        they had not finished within ``timeout`` seconds."""
        assert self._state.calibrator is not None
        return self._state.calibrator.drain(timeout)

    def close(self) -> None:
        """Stop the background calibrator and the flush timer, write pending counters,
        stop the L1 subscriber, close the sync connection pools."""
        state = self._state
        if state.calibrator is not None:
            state.calibrator.close()
        if state.flush_timer is not None:
            state.flush_timer.close()
        self._cache.flush_counts(force=True)
        if state.l1_sub is not None:
            state.l1_sub.stop()
            state.l1_sub = None
        self._store.close()
        if self._admin_store is not self._store:
            self._admin_store.close()

    async def aclose(self) -> None:
        """Stop the background calibrator and the flush timer, write pending counters
        (async), stop the L1 subscriber, and close the running event loop's connection
        pools. Optional: a loop closed by ``asyncio.run`` closes its pool itself."""
        state = self._state
        if state.calibrator is not None:
            state.calibrator.close()
        if state.flush_timer is not None:
            state.flush_timer.close(wait=0)  # told to stop; never joined on the loop
        await self._acache.flush_counts(force=True)
        if state.l1_sub is not None:
            state.l1_sub.stop()
            state.l1_sub = None
        await self._async_stores.aclose()
