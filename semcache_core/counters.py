"""Per-tenant counters persisted in Redis: totals that survive restarts and add up
across processes.

Each process buffers increments in memory and flushes them at most once per
``stats_flush_interval`` (one pipeline of HINCRBY / HINCRBYFLOAT per tenant touched),
so the request path pays one round trip per interval, not per request. A failed flush
keeps the increments for the next one (bounded), so a Redis outage loses nothing but
the counts of a process that dies during it.

Keys: ``<prefix>:__stats__:<namespace>:<tenant digest>``, a HASH with one field per
counter and the raw tenant id in ``tenant_id``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from .storage.commands import counter_commands
from .storage.layout import Layout

FLOAT_FIELDS = frozenset({"cost_saved_usd"})
MAX_PENDING_TENANTS = 100_000

Pending = dict[str, tuple[Counter[str], dict[str, float]]]


class PendingCounts:
    """Increments not yet written to Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ints: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._floats: defaultdict[str, defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self._last_flush = time.monotonic()

    def add(self, tenant: str, name: str, n: float = 1) -> None:
        with self._lock:
            if name in FLOAT_FIELDS:
                self._floats[tenant][name] += float(n)
            else:
                self._ints[tenant][name] += int(n)

    def due(self, interval: float) -> bool:
        with self._lock:
            return bool(self._ints or self._floats) and (
                time.monotonic() - self._last_flush >= interval
            )

    def take(self) -> Pending:
        with self._lock:
            tenants = set(self._ints) | set(self._floats)
            taken: Pending = {
                t: (self._ints.pop(t, Counter()), dict(self._floats.pop(t, {}))) for t in tenants
            }
            self._last_flush = time.monotonic()
            return taken

    def restore(self, taken: Pending) -> None:
        """Put back what a failed flush could not write."""
        with self._lock:
            for tenant, (ints, floats) in taken.items():
                if len(self._ints) >= MAX_PENDING_TENANTS:
                    break  # bounded: a long outage drops the oldest counts of new tenants
                self._ints[tenant].update(ints)
                for name, value in floats.items():
                    self._floats[tenant][name] += value


def take_commands(
    pending: PendingCounts, layout: Layout
) -> tuple[list[tuple[Any, ...]], Callable[[], None]] | None:
    """The buffered increments as counter commands, and how to put them back when the
    write fails; ``None`` when nothing is buffered."""
    taken = pending.take()
    if not taken:
        return None
    return counter_commands(layout, taken), lambda: pending.restore(taken)


def parse_counts(raw: dict[Any, Any]) -> tuple[str, dict[str, float]] | None:
    fields = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}
    tenant_raw = fields.pop("tenant_id", None)
    if tenant_raw is None:
        return None
    tenant = (
        tenant_raw.decode("utf-8", "surrogatepass")
        if isinstance(tenant_raw, bytes)
        else str(tenant_raw)
    )
    values: dict[str, float] = {}
    for name, value in fields.items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            continue
    return tenant, values


def totals(replies: list[Any]) -> dict[str, dict[str, float]]:
    """Persisted counters per tenant id, from the store's `read_counts`."""
    out: dict[str, dict[str, float]] = {}
    for raw in replies:
        parsed = parse_counts(raw or {})
        if parsed is not None:
            out[parsed[0]] = parsed[1]
    return dict(sorted(out.items()))
