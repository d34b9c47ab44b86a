"""In-process counters behind `CacheEngine.stats()`.

Thread-safe and cheap. Prometheus export and counters persisted in Redis build on the
same `record_*` calls.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

from .policy import Outcome


class LocalStats:
    """Counts per tenant: lookups by outcome, stores, skipped stores, errors by operation,
    corrupt entries, and lookup seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._seconds: defaultdict[str, float] = defaultdict(float)
        self.errors: Counter[str] = Counter()
        self.invalidated = 0

    def record_lookup(self, tenant: str, outcome: Outcome, seconds: float) -> None:
        with self._lock:
            self._counts[tenant][outcome.value] += 1
            self._counts[tenant]["requests"] += 1
            self._seconds[tenant] += seconds

    def record(self, tenant: str, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[tenant][name] += n

    def record_error(self, operation: str, tenant: str | None = None) -> None:
        with self._lock:
            self.errors[operation] += 1
            if tenant is not None:
                self._counts[tenant]["errors"] += 1

    def record_invalidated(self, n: int) -> None:
        with self._lock:
            self.invalidated += n

    def snapshot(self, tenant: str | None = None) -> dict[str, Any]:
        with self._lock:
            tenants = [tenant] if tenant is not None else sorted(self._counts)
            out: dict[str, Any] = {
                "tenants": {},
                "errors": dict(self.errors),
                "invalidated": self.invalidated,
            }
            for t in tenants:
                c = self._counts.get(t, Counter())
                requests = c["requests"]
                hits = (
                    c[Outcome.EXACT_HIT.value]
                    + c[Outcome.SEMANTIC_HIT.value]
                    + c[Outcome.PROMOTED.value]
                )
                out["tenants"][t] = {
                    "requests": requests,
                    "exact_hits": c[Outcome.EXACT_HIT.value],
                    "semantic_hits": c[Outcome.SEMANTIC_HIT.value],
                    "promoted": c[Outcome.PROMOTED.value],
                    "shadow_hits": c[Outcome.SHADOW_HIT.value],
                    "misses": c[Outcome.MISS.value] + c[Outcome.SHADOW_HIT.value],
                    "stale_served": c["stale_served"],
                    "verdicts": c["verdicts"],
                    "verdicts_agreed": c["verdicts_agreed"],
                    "bypassed": c[Outcome.BYPASS.value],
                    "errors": c["errors"],
                    "stores": c["stores"],
                    "stores_skipped": c["stores_skipped"],
                    "corrupt_entries": c["corrupt"],
                    "hit_rate": hits / requests if requests else 0.0,
                    "mean_lookup_ms": 1000 * self._seconds[t] / requests if requests else 0.0,
                }
            return out
