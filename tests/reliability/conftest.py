"""Fixtures and helpers of the reliability suite (issue 6).

Every test here that breaks Redis starts its own embedded server (Redis 8 + RediSearch)
in ``tmp_path``; the session server of ``tests/conftest.py`` is never touched. Nothing is
mocked: faults are real signals, real ``CLIENT KILL``s, a real TCP proxy that cuts
connections, real ``maxmemory``. Measured figures are printed with `report` (run pytest
with ``-s`` to see them) and copied into ``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.caches import RETURN_VAL_TYPE

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, LookupResult
from semcache_core.embedded import EmbeddedRedis, start_embedded_redis
from semcache_core.request import CacheRequest
from tests.reliability.proxy import ChildProxy

# -- machine stalls ----------------------------------------------------------------------------


class StallWatch:
    """A thread that sleeps 5 ms at a time and notes how late it wakes: the stalls of the
    process itself (the CPU taken by other processes on a loaded CI machine, a garbage
    collection), which hold up every thread and task alike, the cache or not.

    Timing assertions subtract from a call the stall that overlapped it, so they bound
    what the cache adds, not what the scheduler took. Blocking I/O on an event loop
    releases the GIL, so this thread keeps waking on time: a cache that blocked its loop
    is not excused."""

    TICK = 0.005
    NOISE = 0.002  # oversleeping by less than this is ordinary timer slack

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (woke, seconds late)
        self._woke = 0.0  # the latest wake-up, recorded or not
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stall-watch")

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(self.TICK)
            woke = time.monotonic()
            late = woke - before - self.TICK
            if late > self.NOISE:
                self.stalls.append((woke, late))
            self._woke = woke

    def within(self, started: float, finished: float) -> float:
        """Seconds of stall that overlapped [started, finished] (monotonic clock).

        A stall is recorded when the thread runs again, which may be after the caller
        asks: wait (at most 1 s) for a wake-up past ``finished`` first."""
        deadline = time.monotonic() + 1.0
        while self._woke < finished and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(self.TICK)
        total = 0.0
        for woke, late in list(self.stalls):
            overlap = min(woke, finished) - max(woke - late, started)
            if overlap > 0:
                total += overlap
        return total


# -- reporting ---------------------------------------------------------------------------------
def report(label: str, **figures: Any) -> None:
    """Print measured figures on one line (``pytest -s`` shows them)."""
    parts = []
    for name, value in figures.items():
        if isinstance(value, float):
            parts.append(f"{name}={value:.4g}")
        else:
            parts.append(f"{name}={value}")
    print(f"\n[reliability] {label}: {', '.join(parts)}", flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- a private embedded Redis that can be broken ------------------------------------------------
class OwnRedis:
    """A test's private embedded Redis: pause (SIGSTOP), kill (SIGKILL), terminate
    (SIGTERM), restart on the same port and data dir. Teardown always resumes it first."""

    def __init__(self, data_dir: Path, port: int | None = None, **kwargs: Any) -> None:
        self.data_dir = data_dir
        self.kwargs = kwargs
        self.server: EmbeddedRedis = start_embedded_redis(
            data_dir, port=port, reuse=False, stop_at_exit=True, **kwargs
        )
        self.paused = False

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        assert self.server.pid is not None
        return self.server.pid

    def admin(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10, **kwargs)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, then reap the process (and forget its server.json)."""
        self.resume()
        os.kill(self.pid, signal.SIGKILL)
        self.server.stop(timeout=5.0)

    def terminate(self) -> None:
        """SIGTERM: Redis' orderly shutdown (fsyncs the AOF), then reap."""
        self.resume()
        os.kill(self.pid, signal.SIGTERM)
        assert self.server._process is not None
        self.server._process.wait(timeout=30)
        self.server.stop(timeout=5.0)

    def restart(self) -> None:
        """Start a new server on the same port and data dir (after kill/terminate/stop)."""
        self.server.stop(timeout=5.0)
        self.server = start_embedded_redis(
            self.data_dir, port=self.port, reuse=False, stop_at_exit=True, **self.kwargs
        )

    def close(self) -> None:
        self.resume()
        self.server.stop(timeout=5.0)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.close()


# -- a TCP proxy that can drop connections, in its own process -------------------------------
class ProxyProcess(ChildProxy):
    """`tests.reliability.proxy.CuttingProxy` run in a child process, so that its
    forwarding does not compete for this process' GIL with the traffic it measures.

    * `cut_all`: reset (RST) every open connection now, whatever is in flight.
    * `cut_mid_command`: from now on, each request is forwarded to Redis and the client's
      connection is then reset before the reply comes back.
    * `heal`: stop cutting.
    """

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.cuts = 0

    def cut_all(self) -> None:
        self.cuts = int(self._send("cut"))

    def cut_mid_command(self, on: bool = True) -> None:
        self.cuts = int(self._send("mid" if on else "heal"))

    def heal(self) -> None:
        self.cut_mid_command(False)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.cuts = int(self._send("quit") or self.cuts)
        self._wait()


# -- instrumented engine: what each call cost and how it ended ------------------------------------
@dataclass
class CallLog:
    """Filled during one user call (one LangChain invoke) by `InstrumentedEngine` (how
    the lookup ended, whether the store wrote) and `TimedCache` (adapter time)."""

    lookup_outcome: str | None = None
    lookup_seconds: float = 0.0
    store_seconds: float = 0.0
    stored: bool | None = None
    cache_seconds: float = 0.0  # SemanticCache.lookup + update: what the cache added

    @property
    def added(self) -> float:
        """The time the cache added to the call: the LangChain adapter's own time when it
        was measured (`TimedCache`), else the engine's lookup + store."""
        return self.cache_seconds or self.lookup_seconds + self.store_seconds


CURRENT_CALL: ContextVar[CallLog | None] = ContextVar("reliability_call", default=None)


class InstrumentedEngine(CacheEngine):
    """A real `CacheEngine` that notes, per user call, the lookup outcome and the time
    spent in the cache (lookup + store): the latency the cache added to that call."""

    def lookup(self, request: CacheRequest, *args: Any, **kwargs: Any) -> LookupResult:
        started = time.perf_counter()
        result = super().lookup(request, *args, **kwargs)
        self._note_lookup(result, time.perf_counter() - started)
        return result

    async def alookup(self, request: CacheRequest, *args: Any, **kwargs: Any) -> LookupResult:
        started = time.perf_counter()
        result = await super().alookup(request, *args, **kwargs)
        self._note_lookup(result, time.perf_counter() - started)
        return result

    def store(self, request: CacheRequest, payload: bytes, **kwargs: Any) -> bool:
        started = time.perf_counter()
        ok = super().store(request, payload, **kwargs)
        self._note_store(ok, time.perf_counter() - started)
        return ok

    async def astore(self, request: CacheRequest, payload: bytes, **kwargs: Any) -> bool:
        started = time.perf_counter()
        ok = await super().astore(request, payload, **kwargs)
        self._note_store(ok, time.perf_counter() - started)
        return ok

    @staticmethod
    def _note_lookup(result: LookupResult, seconds: float) -> None:
        log = CURRENT_CALL.get()
        if log is not None:
            log.lookup_outcome = result.outcome.value
            log.lookup_seconds += seconds

    @staticmethod
    def _note_store(ok: bool, seconds: float) -> None:
        log = CURRENT_CALL.get()
        if log is not None:
            log.stored = ok
            log.store_seconds += seconds


class TimedCache(SemanticCache):
    """The real LangChain adapter, timing its own lookup and update per user call."""

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        started = time.perf_counter()
        try:
            return super().lookup(prompt, llm_string)
        finally:
            _add_cache_time(time.perf_counter() - started)

    def update(self, prompt: str, llm_string: str, return_val: Any) -> None:
        started = time.perf_counter()
        try:
            super().update(prompt, llm_string, return_val)
        finally:
            _add_cache_time(time.perf_counter() - started)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        started = time.perf_counter()
        try:
            return await super().alookup(prompt, llm_string)
        finally:
            _add_cache_time(time.perf_counter() - started)

    async def aupdate(self, prompt: str, llm_string: str, return_val: Any) -> None:
        started = time.perf_counter()
        try:
            await super().aupdate(prompt, llm_string, return_val)
        finally:
            _add_cache_time(time.perf_counter() - started)


def _add_cache_time(seconds: float) -> None:
    log = CURRENT_CALL.get()
    if log is not None:
        log.cache_seconds += seconds


def entry_keys(url: str, engine: CacheEngine) -> list[bytes]:
    with redis.Redis.from_url(url, socket_timeout=10) as client:
        return list(client.scan_iter(match=engine.layout.scan_pattern(), count=1000))
