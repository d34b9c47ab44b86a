"""Per-tenant counters persisted in Redis: totals that survive restarts and add up
across processes.

Each process buffers increments in memory and flushes them at most once per
``stats_flush_interval`` (one pipeline of HINCRBY / HINCRBYFLOAT per tenant touched),
so the request path pays one round trip per interval, not per request. A failed flush
keeps the increments for the next one (bounded), so a Redis outage loses nothing but
the counts of a process that dies during it.

Counts are written when due at the end of a lookup or store, by `FlushTimer` (a daemon
thread, so a process that stops calling still writes them within two intervals), at
``close``/``aclose``, and at interpreter exit.

Keys: ``<prefix>:__stats__:<namespace>:<tenant digest>``, a HASH with one field per
counter and the raw tenant id in ``tenant_id``.
"""

from __future__ import annotations

import os
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

    def add_many(self, tenant: str, counts: tuple[tuple[str, float], ...]) -> None:
        """Several `add` under one lock (a lookup counts two or four names)."""
        with self._lock:
            for name, n in counts:
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


class FlushTimer:
    """Calls ``flush`` every ``interval`` seconds on a daemon thread, so counts recorded
    by a process that then stops calling (idle, or sleeping until it is killed) reach
    Redis within two intervals, not only on its next call or at exit.

    The thread is a daemon (it never keeps a process alive), starts on first `start`
    (again in a forked child, whose parent's thread does not run there), and ends on
    `close` or once ``flush`` returns False (its engine is gone). It does no I/O of its
    own: ``flush`` is the engine's sync driver, so it never touches an event loop.

    Args:
        flush: writes the counts that are due; returns False to stop the thread.
        interval: seconds between calls (``stats_flush_interval``).
        on_error: told of an exception ``flush`` raised (the thread goes on).
    """

    def __init__(
        self,
        flush: Callable[[], bool],
        interval: float,
        on_error: Callable[[Exception], None],
    ) -> None:
        self._flush = flush
        self.interval = interval
        self._on_error = on_error
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self.thread: threading.Thread | None = None
        self._pid = os.getpid()

    def start(self) -> None:
        """Start the thread unless it runs or was closed (cheap: every call that counts
        calls this)."""
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's thread (and lock holder) is not here
        if self.thread is not None or self._closed:
            return
        with self._lock:
            if self.thread is not None or self._closed:
                return
            thread = threading.Thread(
                target=self._loop, args=(self._stop,), name="semcache-stats-flush", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # the interpreter is shutting down: atexit writes them
                return
            self.thread = thread

    def close(self, wait: float = 5.0) -> None:
        """Stop the thread; wait up to ``wait`` seconds for a flush in progress to end
        (0: do not wait, as on an event loop)."""
        with self._lock:
            self._closed = True
            self._stop.set()
            thread = self.thread
        if wait > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                if not self._flush():
                    return
            except Exception as exc:  # a failed flush must not end the thread
                self._on_error(exc)


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
