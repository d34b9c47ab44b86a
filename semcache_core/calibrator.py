"""The background calibrator: calibration runs on the engine's own thread, never inside a
user's lookup or store.

The store path only counts verdicts (`note`, a dict update under a lock). Once a tenant
with ``auto_promote`` has ``every`` new verdicts, it is marked due and a daemon thread,
started on first need and stopped by `close` (the engine's ``close``/``aclose``), runs
the calibration: it reads the verdicts, calibrates, and applies the result (audited).
A forked child starts its own thread when it first needs one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class BackgroundCalibrator:
    """Runs ``run(tenant)`` for due tenants on one daemon thread.

    Args:
        run: calibrates and applies for one tenant (may raise; ``on_error`` is told).
        on_error: called with the exception of a failed run.
        every: new verdicts per tenant between runs.
    """

    def __init__(
        self,
        run: Callable[[str], object],
        on_error: Callable[[Exception], None],
        every: int,
    ) -> None:
        self._run = run
        self._on_error = on_error
        self.every = every
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._counts: dict[str, int] = {}
        self._due: dict[str, None] = {}  # insertion-ordered set
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.runs = 0

    def note(self, tenant: str) -> None:
        """Count one new verdict for ``tenant``; mark it due every ``every`` verdicts."""
        with self._lock():
            n = self._counts.get(tenant, 0) + 1
            if n < self.every:
                self._counts[tenant] = n
                return
            self._counts[tenant] = 0
            self._schedule(tenant)

    def request(self, tenant: str) -> None:
        """Mark ``tenant`` due now."""
        with self._lock():
            self._schedule(tenant)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until no calibration is due or running; ``False`` on timeout."""
        with self._lock():
            return self._cond.wait_for(lambda: not self._due and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (a run in progress finishes first)."""
        with self._lock():
            self._closed = True
            self._due.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _lock(self) -> threading.Condition:
        if self._pid != os.getpid():  # forked: the parent's thread does not exist here
            self._reset()
        return self._cond

    def _schedule(self, tenant: str) -> None:
        """Mark due and make sure the thread runs (the condition's lock is held)."""
        if self._closed:
            return
        self._due[tenant] = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="semcache-calibrator", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._due or self._closed)
                if self._closed:
                    return
                tenant = next(iter(self._due))
                del self._due[tenant]
                self._busy = True
            try:
                self._run(tenant)
            except Exception as exc:  # a failed run must not kill the thread
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.runs += 1
                    self._cond.notify_all()
