"""Prometheus metrics (prometheus-client), named as its rules ask: ``_total`` counters,
``_seconds`` histograms, base units.

=====================================  =====================================================
``semcache_requests_total``            lookups by ``layer`` (exact, semantic, none) and
                                       ``outcome`` (exact_hit, semantic_hit, promoted,
                                       shadow_hit, miss, bypass, error)
``semcache_lookup_seconds``            lookup latency histogram by ``outcome``
``semcache_stores_total``              entries written
``semcache_invalidated_entries_total`` entries deleted by invalidation
``semcache_errors_total``              faults by ``operation`` (lookup, store, embed, ...)
``semcache_tokens_saved_total``        tokens of the answers served from the cache
``semcache_cost_saved_usd_total``      what those tokens cost at the price table
``semcache_similarity``                similarity of the nearest semantic candidate, by
                                       ``outcome``
``semcache_verdicts_total``            shadow verdicts by ``agreed``
=====================================  =====================================================

Every series has a ``namespace`` label; a ``tenant`` label is opt-in because tenant
counts can be unbounded and ids may be private: ``tenant_label="id"`` (or ``True``)
labels with the tenant id, ``"digest"`` with the tenant's digest (the token semcache
uses in Redis keys; ``semcache_core.request.tenant_digest``), ``"off"`` (the default)
with neither. ``semcache metrics --tenant-label`` takes the same values. With a
deployment secret (``trace_key``, env ``SEMCACHE_TRACE_KEY``) the digest label is keyed
(``semcache_core.request.keyed_tenant_digest``), as the spans' attribute is.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from .core.rules import Outcome
from .request import emitted_tenant_digest

LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
SIMILARITY_BUCKETS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0)

_LAYER = {
    Outcome.EXACT_HIT: "exact",
    Outcome.SEMANTIC_HIT: "semantic",
    Outcome.PROMOTED: "semantic",
    Outcome.SHADOW_HIT: "semantic",
    Outcome.GUARDED: "semantic",
}

TenantLabel = Literal["off", "digest", "id"]
TENANT_LABELS: tuple[TenantLabel, ...] = ("off", "digest", "id")

_instances: dict[tuple[int, TenantLabel], PrometheusMetrics] = {}


def tenant_label_mode(value: bool | str) -> TenantLabel:
    """``True`` -> ``"id"``, ``False`` -> ``"off"``; a mode name as is.

    Raises:
        ConfigurationError: anything else.
    """
    if value is True:
        return "id"
    if value is False:
        return "off"
    if value in TENANT_LABELS:
        return value
    from .errors import ConfigurationError

    raise ConfigurationError(
        f"tenant_label must be one of {', '.join(TENANT_LABELS)} (or a bool), got {value!r}"
    )


def tenant_label_value(mode: TenantLabel, tenant: str, key: bytes | None = None) -> str:
    """What a ``tenant`` label carries in ``mode`` (not ``"off"``); a digest is keyed
    under ``key`` when one is given."""
    return emitted_tenant_digest(tenant, key) if mode == "digest" else tenant


def env_trace_key() -> bytes | None:
    """``SEMCACHE_TRACE_KEY`` as key bytes, or ``None`` when it is unset or empty."""
    value = os.environ.get("SEMCACHE_TRACE_KEY")
    return value.encode("utf-8", "surrogatepass") if value else None


_instances_lock = threading.Lock()


class PrometheusMetrics:
    """The metric families, registered once per registry.

    Use `PrometheusMetrics.get` to share one set between engines (registering a name
    twice in one registry raises).

    Args:
        registry: where to register; default the process-wide ``REGISTRY``.
        tenant_label: add a ``tenant`` label (mind the cardinality): ``"id"`` or
            ``True`` the tenant id, ``"digest"`` its digest, ``"off"``/``False`` none.
        trace_key: the deployment secret that keys ``"digest"`` labels (HMAC-SHA256);
            default ``SEMCACHE_TRACE_KEY``, else the plain digest of Redis keys.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        tenant_label: bool | str = False,
        trace_key: str | None = None,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.digest_key = (
            trace_key.encode("utf-8", "surrogatepass") if trace_key else env_trace_key()
        )
        self.tenant_mode = tenant_label_mode(tenant_label)
        self.tenant_label = self.tenant_mode != "off"
        t = ["tenant"] if self.tenant_label else []
        reg = self.registry
        self.requests = Counter(
            "semcache_requests",
            "Cache lookups by layer and outcome.",
            ["namespace", "layer", "outcome", *t],
            registry=reg,
        )
        self.lookup_seconds = Histogram(
            "semcache_lookup_seconds",
            "Time a lookup took, Redis and embedding included.",
            ["namespace", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.stores = Counter(
            "semcache_stores", "Entries written.", ["namespace", *t], registry=reg
        )
        self.invalidated = Counter(
            "semcache_invalidated_entries",
            "Entries deleted by invalidation.",
            ["namespace"],
            registry=reg,
        )
        self.errors = Counter(
            "semcache_errors",
            "Faults met (served as misses or skipped writes), by operation.",
            ["namespace", "operation"],
            registry=reg,
        )
        self.tokens_saved = Counter(
            "semcache_tokens_saved",
            "Tokens of the answers served from the cache.",
            ["namespace", *t],
            registry=reg,
        )
        self.cost_saved = Counter(
            "semcache_cost_saved_usd",
            "USD those tokens cost at the price table.",
            ["namespace", *t],
            registry=reg,
        )
        self.similarity = Histogram(
            "semcache_similarity",
            "Cosine similarity of the nearest semantic candidate, by outcome.",
            ["namespace", "outcome"],
            buckets=SIMILARITY_BUCKETS,
            registry=reg,
        )
        self.verdicts = Counter(
            "semcache_verdicts",
            "Shadow verdicts by whether the candidate agreed with the fresh answer.",
            ["namespace", "agreed"],
            registry=reg,
        )

    @classmethod
    def get(
        cls, registry: CollectorRegistry | None = None, *, tenant_label: bool | str = False
    ) -> PrometheusMetrics:
        """The shared instance for a registry (created on first use)."""
        reg = registry if registry is not None else REGISTRY
        with _instances_lock:
            key = (id(reg), tenant_label_mode(tenant_label))
            found = _instances.get(key)
            if found is None:
                found = _instances[key] = cls(reg, tenant_label=tenant_label)
            return found

    def _t(self, tenant: str) -> list[str]:
        if not self.tenant_label:
            return []
        return [tenant_label_value(self.tenant_mode, tenant, self.digest_key)]

    # -- the sink interface LocalStats forwards to -----------------------------------------
    def lookup(
        self,
        namespace: str,
        tenant: str,
        outcome: Outcome,
        seconds: float,
        similarity: float | None,
    ) -> None:
        layer = _LAYER.get(outcome, "none")
        self.requests.labels(namespace, layer, outcome.value, *self._t(tenant)).inc()
        self.lookup_seconds.labels(namespace, outcome.value).observe(seconds)
        if similarity is not None and outcome != Outcome.EXACT_HIT:
            self.similarity.labels(namespace, outcome.value).observe(similarity)

    def count(self, namespace: str, tenant: str, name: str, n: int) -> None:
        if name == "stores":
            self.stores.labels(namespace, *self._t(tenant)).inc(n)
        elif name in ("verdicts_agreed", "verdicts_disagreed"):
            agreed = "true" if name == "verdicts_agreed" else "false"
            self.verdicts.labels(namespace, agreed).inc(n)

    def error(self, namespace: str, operation: str) -> None:
        self.errors.labels(namespace, operation).inc()

    def invalidated_entries(self, namespace: str, n: int) -> None:
        self.invalidated.labels(namespace).inc(n)

    def saved(self, namespace: str, tenant: str, tokens: int, usd: float) -> None:
        if tokens:
            self.tokens_saved.labels(namespace, *self._t(tenant)).inc(tokens)
        if usd:
            self.cost_saved.labels(namespace, *self._t(tenant)).inc(usd)


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> Any:
    """Serve ``/metrics`` on ``port`` from a daemon thread (prometheus-client's server).

    Binds loopback by default; pass ``addr="0.0.0.0"`` to accept scrapes from other hosts.

    Returns:
        What ``prometheus_client.start_http_server`` returns (server, thread).
    """
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=registry if registry else REGISTRY)


class TotalsCollector:
    """Exposes the totals persisted in Redis (every process, every restart) at scrape time,
    as ``semcache_tenant_*`` counters. For ``semcache metrics``: one exporter per
    deployment instead of one per process.

    Args:
        engine: whose namespace to read.
        tenant_label: as for `PrometheusMetrics`: ``"off"`` (default) sums the tenants
            into one series per namespace; ``"digest"`` or ``"id"`` adds a ``tenant``
            label with the tenant's digest (keyed under the engine's ``trace_key``, if
            set) or id.
    """

    _FIELDS = (
        ("requests", "Lookups."),
        ("exact_hits", "Exact hits."),
        ("semantic_hits", "Semantic hits."),
        ("promoted", "Shadow candidates served by promotion."),
        ("shadow_hits", "Shadow candidates not served."),
        ("misses", "Lookups the LLM answered."),
        ("errors", "Faults."),
        ("stores", "Entries written."),
        ("tokens_saved", "Tokens served from the cache."),
        ("cost_saved_usd", "USD saved."),
    )

    def __init__(self, engine: Any, *, tenant_label: bool | str = False) -> None:
        self.engine = engine
        self.tenant_mode = tenant_label_mode(tenant_label)

    def describe(self) -> list[Any]:
        return []  # collected lazily: no Redis call at registration

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.engine.stats(totals=True)
        totals = snap.get("totals") or {}
        ns = self.engine.config.namespace
        key = self.engine.config.trace_key_bytes if self.tenant_mode == "digest" else None
        labels = ["namespace"] if self.tenant_mode == "off" else ["namespace", "tenant"]
        rows: list[tuple[list[str], Any]] = (
            [([ns], _summed(totals.values()))]
            if self.tenant_mode == "off"
            else [
                ([ns, tenant_label_value(self.tenant_mode, t, key)], view)
                for t, view in totals.items()
            ]
        )
        for name, doc in self._FIELDS:
            family = CounterMetricFamily(
                f"semcache_tenant_{name}", doc + " Persisted totals.", labels=labels
            )
            for values, view in rows:
                family.add_metric(values, float(view.get(name, 0)))
            yield family
        entries = GaugeMetricFamily(
            "semcache_tenant_entries", "Entries in the index.", labels=labels
        )
        for values, view in rows:
            entries.add_metric(values, float(view.get("entries", 0)))
        yield entries
        up = GaugeMetricFamily(
            "semcache_totals_up", "1 if Redis answered the scrape.", labels=["namespace"]
        )
        up.add_metric([ns], 0.0 if snap.get("totals") is None else 1.0)
        yield up


def _summed(views: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for view in views:
        for name, value in view.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = out.get(name, 0.0) + float(value)
    return out
