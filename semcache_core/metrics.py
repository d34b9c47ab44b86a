"""Counters behind `CacheEngine.stats()`, and where each event also goes.

`LocalStats` counts per tenant in this process (thread-safe, cheap). Each event is also
forwarded to the optional Prometheus metrics and to the buffer of counters persisted in
Redis (`semcache_core.counters`).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from .core.rules import Outcome

if TYPE_CHECKING:
    from .counters import PendingCounts
    from .prometheus import PrometheusMetrics

# Outcome -> the counter it increments (in process and in Redis).
OUTCOME_FIELDS = {o: o.value for o in Outcome}


def summarize(c: Any) -> dict[str, Any]:
    """The per-tenant view of raw counters (in-process or persisted)."""

    def n(name: str) -> int:
        return int(c.get(name, 0) or 0)

    requests = n("requests")
    hits = n(Outcome.EXACT_HIT.value) + n(Outcome.SEMANTIC_HIT.value) + n(Outcome.PROMOTED.value)
    return {
        "requests": requests,
        "exact_hits": n(Outcome.EXACT_HIT.value),
        "semantic_hits": n(Outcome.SEMANTIC_HIT.value),
        "promoted": n(Outcome.PROMOTED.value),
        "shadow_hits": n(Outcome.SHADOW_HIT.value),
        # Near enough to serve, refused by the verifier: its own outcome.
        "guarded": n(Outcome.GUARDED.value),
        # Only misses: shadow hits and guarded candidates are their own outcomes (the LLM
        # answered them too; the LLM's share of requests is misses + shadow_hits +
        # guarded + bypassed + errors).
        "misses": n(Outcome.MISS.value),
        "bypassed": n(Outcome.BYPASS.value),
        "errors": n("errors"),
        "stores": n("stores"),
        "stores_skipped": n("stores_skipped"),
        "corrupt_entries": n("corrupt"),
        "stale_served": n("stale_served"),
        "verdicts": n("verdicts"),
        "verdicts_agreed": n("verdicts_agreed"),
        "tokens_saved": n("tokens_saved"),
        "cost_saved_usd": float(c.get("cost_saved_usd", 0.0) or 0.0),
        "hit_rate": hits / requests if requests else 0.0,
    }


class LocalStats:
    """Counts per tenant: lookups by outcome, stores, skipped stores, errors by operation,
    corrupt entries, verdicts, tokens and dollars saved, and lookup seconds."""

    def __init__(
        self,
        namespace: str = "default",
        prometheus: PrometheusMetrics | None = None,
        pending: PendingCounts | None = None,
    ) -> None:
        self.namespace = namespace
        self.prometheus = prometheus
        self.pending = pending
        self._lock = threading.Lock()
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._cost: defaultdict[str, float] = defaultdict(float)
        self._seconds: defaultdict[str, float] = defaultdict(float)
        self.errors: Counter[str] = Counter()
        self.invalidated = 0

    def record_lookup(
        self,
        tenant: str,
        outcome: Outcome,
        seconds: float,
        similarity: float | None = None,
        saved: tuple[int, float] | None = None,
    ) -> None:
        """Count a lookup, and what its hit ``saved`` (tokens, dollars): one lock and
        one pending write for both (this runs on every lookup, L1 hits included)."""
        name = outcome.value
        with self._lock:
            counts = self._counts[tenant]
            counts[name] += 1
            counts["requests"] += 1
            self._seconds[tenant] += seconds
            if saved is not None:
                counts["tokens_saved"] += saved[0]
                self._cost[tenant] += saved[1]
        if self.pending is not None:
            if saved is None:
                self.pending.add_many(tenant, ((name, 1), ("requests", 1)))
            else:
                tokens, usd = saved
                self.pending.add_many(
                    tenant,
                    (
                        (name, 1),
                        ("requests", 1),
                        ("tokens_saved", tokens),
                        ("cost_saved_usd", usd),
                    ),
                )
        if self.prometheus is not None:
            self.prometheus.lookup(self.namespace, tenant, outcome, seconds, similarity)
            if saved is not None:
                self.prometheus.saved(self.namespace, tenant, saved[0], saved[1])

    def record(self, tenant: str, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[tenant][name] += n
        if self.pending is not None:
            self.pending.add(tenant, name, n)
        if self.prometheus is not None:
            self.prometheus.count(self.namespace, tenant, name, n)

    def record_error(self, operation: str, tenant: str | None = None) -> None:
        with self._lock:
            self.errors[operation] += 1
            if tenant is not None:
                self._counts[tenant]["errors"] += 1
        if self.pending is not None and tenant is not None:
            self.pending.add(tenant, "errors")
        if self.prometheus is not None:
            self.prometheus.error(self.namespace, operation)

    def record_invalidated(self, n: int) -> None:
        with self._lock:
            self.invalidated += n
        if self.prometheus is not None:
            self.prometheus.invalidated_entries(self.namespace, n)

    def snapshot(self, tenant: str | None = None) -> dict[str, Any]:
        with self._lock:
            tenants = [tenant] if tenant is not None else sorted(self._counts)
            out: dict[str, Any] = {
                "tenants": {},
                "errors": dict(self.errors),
                "invalidated": self.invalidated,
            }
            for t in tenants:
                c: dict[str, Any] = dict(self._counts.get(t, Counter()))
                c["cost_saved_usd"] = self._cost.get(t, 0.0)
                view = summarize(c)
                requests = view["requests"]
                view["mean_lookup_ms"] = 1000 * self._seconds[t] / requests if requests else 0.0
                out["tenants"][t] = view
            return out
