"""`EngineState`: what the async and sync drivers share, and the steps that need no I/O.

One engine has one state: configuration, the embedder, verifier and judge, the circuit
breaker, counters, the in-process L1 tier, the shadow ledger, the cached tenant
policies. Both drivers (`_async`, and `_sync` generated from it) read and change it;
nothing here sends a Redis command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from cachetools import TTLCache

from . import tracing
from .calibrator import BackgroundCalibrator
from .coalesce import SingleFlight, Ticket
from .config import CacheConfig, redacted_url
from .core import read
from .core.result import _LAST, LookupResult
from .core.rules import Outcome, resolve_ttl, should_store
from .core.verify import Verification
from .counters import FlushTimer, PendingCounts, take_commands
from .deadline import TripClock
from .embedding import CachedEmbedder, Embedder, declared_dims
from .entry import vector_bytes
from .errors import (
    BackendRefusedError,
    ConfigurationError,
    DeadlineSpentError,
    EmbedderMismatchError,
)
from .judges import Judge
from .l1 import LocalTier
from .metrics import LocalStats
from .microbatch import MicroBatcher
from .pricing import PriceTable, SavingsMemo
from .prometheus import PrometheusMetrics
from .request import CacheRequest, keyed_tenant_digest
from .resilience import CircuitBreaker, RateLimitedLog
from .shadow import PendingCandidate, ShadowLedger
from .state_l1 import LocalTierSteps
from .storage.errors import REDIS_FAULTS, is_missing_index, is_pool_exhausted, translate
from .storage.index_choice import IndexSizes
from .storage.l1_subscriber import L1Coherence
from .storage.layout import Layout
from .storage.schema import META_MIGRATION
from .tenant_policy import TenantPolicy, default_policy, effective_policy, parse_stored
from .verifiers import CandidateVerifier

logger = logging.getLogger("semcache")

Decoder = Callable[[bytes, str], Any]
TextOf = Callable[[Any], str]
# Disagreeing verdicts raise the candidate entry's floor just above the similarity at
# which it answered a different question.
FLOOR_STEP = 1e-4
POLICY_CACHE_MAX = 100_000
DEFAULT_EXACT_ONLY_DIMS = 384
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()  # reusable


def approx_tokens(text: str) -> int:
    """A token count for embedders that do not report theirs: about 4 characters each."""
    return len(text) // 4 + 1


def identity(payload: bytes, codec: str) -> Any:
    return payload


read.share_decoded(identity)  # bytes: nothing to mutate


def default_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else repr(value)


class EngineState(LocalTierSteps):
    """The shared, I/O-free part of one `CacheEngine` (its L1 steps in `state_l1`)."""

    def __init__(
        self,
        config: CacheConfig,
        *,
        layout: Layout,
        embedder: Embedder | None,
        judge: Judge,
        verifier: CandidateVerifier,
        window: tuple[int, Callable[[str], int]] | None,
        metrics: PrometheusMetrics | None,
        prices: PriceTable,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.layout = layout
        self.index_sizes = IndexSizes()
        self.trace_key = config.trace_key_bytes
        self.embedder = embedder
        self.judge = judge
        self.verifier = verifier
        self.window = window
        self.metrics = metrics
        self.prices = prices
        self.clock = clock
        self.savings = SavingsMemo(prices)
        self.l1: LocalTier | None = (
            LocalTier(config.l1_maxsize, config.l1_ttl, config.l1_policy)
            if config.l1_maxsize
            else None
        )
        self.l1_sub: L1Coherence | None = None
        self.l1_pid = 0
        self.flights: SingleFlight | None = (
            SingleFlight(wait_timeout=config.coalesce_wait, lease=config.coalesce_lease)
            if config.coalesce != "off"
            else None
        )
        # The coalescing drivers (sync, async): each counts the lock faults it met.
        self.coalescers: list[Any] = []
        self.ledger = ShadowLedger()
        # tenant -> effective policy, refreshed from Redis every policy_refresh seconds.
        self.policies: TTLCache[str, TenantPolicy] = TTLCache(
            POLICY_CACHE_MAX, config.policy_refresh, timer=time.monotonic
        )
        self.policy_lock = threading.Lock()
        self.calibrator: BackgroundCalibrator | None = None
        self.audit_rng = random.Random()
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown)
        self.trips = TripClock()  # how long recent Redis trips took (`deadline`)
        self.log = RateLimitedLog()
        self.pending = PendingCounts() if config.persist_stats else None
        # Writes due counts while no call does (set by the engine, which owns the sync
        # driver it flushes through).
        self.flush_timer: FlushTimer | None = None
        self.stats = LocalStats(config.namespace, metrics, self.pending)
        self.ready = False
        self.setup_lock = threading.Lock()
        self.dims: int | None = config.dims

    # -- keys and results ----------------------------------------------------------------
    def key(self, request: CacheRequest) -> str:
        return self.layout.entry_key(request.tenant_token, request.exact_key, request.partition)

    def result(
        self,
        request: CacheRequest,
        decision: read.ReadDecision,
        started: float,
        *,
        stale: bool = False,
        record: bool = True,
    ) -> LookupResult:
        """The `LookupResult` of a decision, counted (``record``) and remembered for
        `last_lookup`."""
        seconds = time.perf_counter() - started
        outcome, found = decision.outcome, decision.found
        entry = found.entry if found is not None else None
        served = decision.served
        saved = None
        if served and entry is not None and entry.usage is not None:
            saved = self.savings.saved(entry.usage)
        if stale:
            # A second lookup for a request already counted: counted apart.
            self.stats.record(request.tenant, "stale_served" if served else "stale_missed")
        elif record:
            self.stats.record_lookup(request.tenant, outcome, seconds, decision.similarity, saved)
        tokens, usd = saved if saved is not None else (0, 0.0)
        result = LookupResult(
            outcome=outcome,
            value=found.value if served and found is not None else None,
            similarity=decision.similarity,
            key=entry.key if entry else decision.guarded_key,
            question=entry.question if entry else None,
            created_at=entry.created_at if entry else None,
            seconds=seconds,
            stale=stale,
            tokens_saved=tokens,
            cost_saved_usd=usd,
            guard=decision.guard,
        )
        _LAST.set(result)
        return result

    def leading(self, request: CacheRequest, result: LookupResult, ticket: Ticket) -> LookupResult:
        """A coalesced miss whose caller now leads the key: counted, and carrying the
        leadership (``lease``) that its store, or `CacheEngine.abandon`, ends."""
        self.record(request, result)
        leading = dataclasses.replace(result, lease=ticket)
        _LAST.set(leading)
        return leading

    def record(self, request: CacheRequest, result: LookupResult) -> None:
        """Count a lookup whose recording was held back (coalescing)."""
        saved = None
        if result.tokens_saved or result.cost_saved_usd:
            saved = (result.tokens_saved, result.cost_saved_usd)
        self.stats.record_lookup(
            request.tenant, result.outcome, result.seconds, result.similarity, saved
        )

    def span(self, name: str, request: CacheRequest | None) -> AbstractContextManager[Any]:
        """An OpenTelemetry span around a call; it yields ``None`` without opentelemetry
        or without a configured tracer provider (no span is made then: it would record
        nothing)."""
        if not tracing.active():
            return _NO_SPAN
        attrs: dict[str, Any] = {"semcache.namespace": self.config.namespace}
        if request is not None:
            attrs["semcache.tenant_digest"] = self.emitted_digest(request)
        cm = tracing.start_span(name, attrs)
        return _NO_SPAN if cm is None else cm

    def emitted_digest(self, request: CacheRequest) -> str:
        """The tenant digest spans and logs carry: keyed under ``trace_key`` if set, else
        the one in Redis keys (``request.tenant_token``)."""
        if self.trace_key is None:
            return request.tenant_token
        return keyed_tenant_digest(request.tenant, self.trace_key)

    def loggable_key(self, request: CacheRequest, key: str) -> str:
        """An entry key for a log line: with ``trace_key``, its tenant part is the keyed
        digest (the request's tenant) or ``-`` (another's), never the plain digest."""
        prefix = self.layout.key_prefix
        if self.trace_key is None or not key.startswith(prefix):
            return key
        token, sep, rest = key[len(prefix) :].partition(":")
        shown = self.emitted_digest(request) if token == request.tenant_token else "-"
        return f"{prefix}{shown}{sep}{rest}"

    # -- faults --------------------------------------------------------------------------
    def fault(
        self,
        operation: str,
        request: CacheRequest | None,
        exc: BaseException,
        *,
        breaker: bool = True,
    ) -> None:
        """Count and log (rate-limited) a fault the hot path swallows."""
        if is_missing_index(exc):
            # Redis lost the index (came back empty): set it up again on the next call.
            self.ready = False
        # A pool that ran dry is this process's congestion, not a sick Redis: stopping
        # calls to Redis would turn a burst into an outage. It is counted as "pool", so
        # stats() tells congestion (raise max_connections or pool_timeout) from faults.
        congested = is_pool_exhausted(exc)
        # A trip the call's deadline did not start (`semcache_core.deadline`): Redis is
        # slow, not failing, so the breaker is not fed; counted under the operation.
        spent = isinstance(exc, DeadlineSpentError)
        if breaker and isinstance(exc, REDIS_FAULTS) and not (congested or spent):
            self.breaker.record_failure()
        self.stats.record_error(
            "pool" if congested else operation, request.tenant if request else None
        )
        self.log.error(operation, translate(exc))

    def write_fault(self, operation: str, request: CacheRequest | None, exc: Exception) -> None:
        # Redis refusing a write (OOM under noeviction, a read-only replica) answers at
        # once and says nothing about reads: it must not open the breaker.
        self.fault(operation, request, exc, breaker=not isinstance(exc, BackendRefusedError))

    def admin_error(self, exc: BaseException) -> BaseException:
        """The error an administration call raises (they do not fail open)."""
        return translate(exc, redacted_url(self.config.redis_url))

    def corrupt(self, request: CacheRequest, key: str, exc: Exception) -> None:
        self.stats.record(request.tenant, "corrupt")
        logger.warning(
            "semcache: deleting corrupt entry %s: %s", self.loggable_key(request, key), exc
        )

    def foreign(self, request: CacheRequest, key: str) -> None:
        self.stats.record_error("partition_guard", request.tenant)
        logger.error(
            "semcache: refused an entry from another partition: %s",
            self.loggable_key(request, key),
        )

    # -- tenant policies -----------------------------------------------------------------
    def cache_policy(self, tenant: str, raw: Any) -> TenantPolicy:
        try:
            pol = effective_policy(self.config, parse_stored(raw))
        except (ValueError, ConfigurationError) as exc:
            # A corrupt stored policy must not break lookups: the code defaults apply.
            self.stats.record_error("policy", tenant)
            self.log.error("policy", exc)
            pol = default_policy(self.config)
        with self.policy_lock:
            self.policies[tenant] = pol
        return pol

    def cached_policy(self, tenant: str) -> TenantPolicy | None:
        with self.policy_lock:  # not `get`: it adds three frames to every lookup
            try:
                return self.policies[tenant]
            except KeyError:
                return None

    def semantic_policy(self, pol: TenantPolicy) -> read.SemanticPolicy:
        return read.SemanticPolicy(
            mode=pol.semantic,
            threshold=pol.threshold,
            promotion_threshold=pol.promotion_threshold,
            auto_promote=pol.auto_promote,
            shadow_floor=self.config.shadow_floor,
            audit_rate=self.config.audit_rate,
            sliding=self.config.sliding_ttl,
        )

    def policy_document(self, overrides: dict[str, Any]) -> str:
        return json.dumps({**overrides, "updated_at": self.clock()}, sort_keys=True)

    def audit_fields(
        self,
        tenant: str,
        action: str,
        old: dict[str, Any],
        new: dict[str, Any],
        evidence: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "at": repr(self.clock()),
            "tenant": tenant.encode("utf-8", "surrogatepass"),
            "action": action,
            "old": json.dumps(old, sort_keys=True),
            "new": json.dumps(new, sort_keys=True),
            "evidence": json.dumps(evidence or {}, sort_keys=True),
        }

    # -- embedding -----------------------------------------------------------------------
    def wants_vector(self, request: CacheRequest, pol: TenantPolicy) -> bool:
        if pol.semantic == "off" or self.embedder is None or request.question is None:
            return False
        if request.kind and request.kind in self.config.exact_only_kinds:
            return False
        return self.fits_window(request.question)

    def fits_window(self, question: str) -> bool:
        """A question the embedder would cut off is exact-only: two long prompts that
        differ past the cut would embed the same."""
        if self.window is None:
            return True
        max_tokens, count = self.window
        if len(question) + 2 <= max_tokens:
            return True  # a token is at least one character
        try:
            return count(question) <= max_tokens
        except Exception:
            return False

    def embedder_at_hand(self, question: str) -> bool:
        """Whether embedding ``question`` now costs less than a Redis round trip."""
        at_hand = getattr(self.embedder, "at_hand", None)
        return bool(at_hand(question)) if at_hand is not None else False

    def embed_failed(self, request: CacheRequest, exc: Exception) -> None:
        self.stats.record_error("embed", request.tenant)
        self.log.error("embed", exc)

    def vector_bytes(self, vector: Sequence[float]) -> bytes:
        if self.dims is not None and len(vector) != self.dims:
            raise EmbedderMismatchError(
                f"index {self.layout.index_name!r} was built with dims={self.dims} but "
                f"this engine's embedder produces dims={len(vector)}: your embedder "
                "produces a different vector size than the one the index was built for "
                "(did the embedding model change?). Pass dims= to find out at "
                f"construction. Otherwise {META_MIGRATION}"
            )
        return vector_bytes(vector, self.config.datatype)

    def known_dims(self) -> int | None:
        """Dims without calling the embedder: configured, or the embedder's own."""
        if self.dims is None:
            if self.embedder is None:
                self.dims = DEFAULT_EXACT_ONLY_DIMS
            else:
                self.dims = declared_dims(self.embedder)
        return self.dims

    # -- verification --------------------------------------------------------------------
    def verify_failed(self, request: CacheRequest, exc: Exception) -> Verification:
        self.stats.record_error("verify", request.tenant)
        self.log.error("verify", exc)
        return Verification(False, "error")

    # -- store ---------------------------------------------------------------------------
    def store_ttl(self, request: CacheRequest, pol: TenantPolicy) -> tuple[bool, float | None]:
        """Whether to write at all (TTL 0 means no), and the entry's TTL."""
        ttl = resolve_ttl(request.ttl, pol.ttl)
        if not should_store(ttl):
            self.stats.record(request.tenant, "stores_skipped")
            return False, None
        return True, ttl

    # -- shadow verdicts -----------------------------------------------------------------
    def park(self, request: CacheRequest, park: read.Park, text_of: TextOf | None) -> None:
        """Keep a candidate that was not served, to judge it when the fresh answer to
        the same request is stored."""
        try:
            text = (text_of or default_text)(park.found.value)
        except Exception as exc:
            self.stats.record_error("judge", request.tenant)
            self.log.error("judge", exc)
            return
        self.ledger.park(
            self.key(request),
            park.found.entry.key,
            park.similarity,
            text,
            request.question or "",
            park.guarded,
        )

    def verdict_fields(self, candidate: PendingCandidate, agreed: bool) -> dict[str, Any]:
        return {
            "s": repr(candidate.similarity),
            "a": "1" if agreed else "0",
            "t": repr(self.clock()),
            "c": candidate.key,
            "j": self.judge.name,
            "g": "1" if candidate.guarded else "0",
        }

    def counted_verdict(self, request: CacheRequest, pol: TenantPolicy, agreed: bool) -> None:
        """Count a verdict, and towards the background calibration (no I/O, no waiting)."""
        self.stats.record(request.tenant, "verdicts")
        self.stats.record(request.tenant, "verdicts_agreed" if agreed else "verdicts_disagreed")
        if pol.auto_promote and pol.semantic in ("shadow", "live") and self.calibrator:
            self.calibrator.note(request.tenant)

    # -- persisted counters --------------------------------------------------------------
    def due_counts(
        self, force: bool, *, patient: bool = False
    ) -> tuple[list[tuple[Any, ...]], Callable[[], None]] | None:
        """The counter commands due now (``force``: all) and how to put them back, or
        ``None`` (none due, or Redis is failing and the write is not ``patient``: the
        administration store tries anyway). A call's check starts the flush timer."""
        pending = self.pending
        if pending is None:
            return None
        if not force and self.flush_timer is not None:
            self.flush_timer.start()
        if not (force or pending.due(self.config.stats_flush_interval)):
            return None
        if not patient and not self.breaker.allow_write():
            return None
        return take_commands(pending, self.layout)

    def counts_failed(self, exc: Exception, restore: Callable[[], None], *, timer: bool) -> None:
        """Keep the counts of a failed write; the timer's faults never feed the breaker. A
        flush the call's deadline did not start is no fault: the next flush (or the flush
        timer, which has no deadline) writes them."""
        restore()
        if isinstance(exc, DeadlineSpentError):
            return
        if timer:
            self.fault("stats", None, exc, breaker=False)
        else:
            # Bookkeeping: a refused write (OOM) must not pause the cache's own writes.
            self.write_fault("stats", None, exc)

    # -- introspection -------------------------------------------------------------------
    def local_snapshot(self, tenant: str | None) -> dict[str, Any]:
        """This process's counters (no I/O)."""
        snap = self.stats.snapshot(tenant)
        snap["breaker"] = self.breaker.state.value
        snap["embedder_calls"] = (
            self.embedder.calls if isinstance(self.embedder, CachedEmbedder) else 0
        )
        inner = getattr(self.embedder, "inner", None)
        if isinstance(inner, MicroBatcher):
            snap["embed_batches"] = {"calls": inner.calls, "batches": inner.batches}
        if self.l1 is not None:
            snap["l1"] = dataclasses.asdict(self.l1.stats())
        if self.flights is not None:
            snap["coalesce"] = coalesce_counts(self.flights, self.coalescers)
        return snap


def coalesce_counts(flights: SingleFlight, coalescers: Sequence[Any]) -> dict[str, int]:
    """The coalescing counters of `stats()`: this process's flights, and the lock faults
    its coalescing drivers met."""
    return {
        "leaders": flights.leaders,
        "waiters": flights.waiters,
        "timeouts": flights.timeouts,
        "takeovers": flights.takeovers,
        "errors": sum(c.errors for c in coalescers),
    }


__all__ = ["EngineState", "LookupResult", "Outcome"]
