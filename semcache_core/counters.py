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
from typing import Any

import redis
import redis.asyncio as aredis

from .request import tenant_digest

FLOAT_FIELDS = frozenset({"cost_saved_usd"})
MAX_PENDING_TENANTS = 100_000

Pending = dict[str, tuple[Counter[str], dict[str, float]]]


def stats_key(prefix: str, namespace: str, tenant: str) -> str:
    return f"{prefix}:__stats__:{namespace}:{tenant_digest(tenant)}"


def stats_pattern(prefix: str, namespace: str) -> str:
    return f"{prefix}:__stats__:{namespace}:*"


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


def _commands(prefix: str, namespace: str, taken: Pending) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for tenant, (ints, floats) in taken.items():
        key = stats_key(prefix, namespace, tenant)
        out.append(("HSETNX", key, "tenant_id", tenant.encode("utf-8", "surrogatepass")))
        for name, n in ints.items():
            if n:
                out.append(("HINCRBY", key, name, n))
        for name, x in floats.items():
            if x:
                out.append(("HINCRBYFLOAT", key, name, repr(x)))
    return out


def flush_sync(client: redis.Redis, prefix: str, namespace: str, pending: PendingCounts) -> int:
    """Write the buffered increments; returns the tenants written. Raises on Redis faults
    (after putting the increments back)."""
    taken = pending.take()
    if not taken:
        return 0
    try:
        pipe = client.pipeline(transaction=False)
        for command in _commands(prefix, namespace, taken):
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        pipe.execute()
    except BaseException:
        pending.restore(taken)
        raise
    return len(taken)


async def flush_async(
    client: aredis.Redis, prefix: str, namespace: str, pending: PendingCounts
) -> int:
    """The async twin of `flush_sync`."""
    taken = pending.take()
    if not taken:
        return 0
    try:
        pipe = client.pipeline(transaction=False)
        for command in _commands(prefix, namespace, taken):
            pipe.execute_command(*command)
        await pipe.execute()
    except BaseException:
        pending.restore(taken)
        raise
    return len(taken)


def _parse(raw: dict[Any, Any]) -> tuple[str, dict[str, float]] | None:
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


def read_totals(
    client: redis.Redis, prefix: str, namespace: str, tenant: str | None = None
) -> dict[str, dict[str, float]]:
    """Persisted counters per tenant id (one tenant, or every tenant via SCAN)."""
    if tenant is not None:
        keys = [stats_key(prefix, namespace, tenant)]
    else:
        keys = [
            k.decode() if isinstance(k, bytes) else k
            for k in client.scan_iter(match=stats_pattern(prefix, namespace), count=1000)
        ]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return _totals(pipe.execute())


async def aread_totals(
    client: aredis.Redis, prefix: str, namespace: str, tenant: str | None = None
) -> dict[str, dict[str, float]]:
    """The async twin of `read_totals`."""
    if tenant is not None:
        keys = [stats_key(prefix, namespace, tenant)]
    else:
        keys = [
            k.decode() if isinstance(k, bytes) else k
            async for k in client.scan_iter(match=stats_pattern(prefix, namespace), count=1000)
        ]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return _totals(await pipe.execute())


def _totals(replies: list[Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for raw in replies:
        parsed = _parse(raw or {})
        if parsed is not None:
            out[parsed[0]] = parsed[1]
    return dict(sorted(out.items()))


def delete_totals(client: redis.Redis, prefix: str, namespace: str) -> int:
    """Remove every persisted counter of a namespace (for tests and resets)."""
    keys = list(client.scan_iter(match=stats_pattern(prefix, namespace), count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(int(n) for n in pipe.execute())
