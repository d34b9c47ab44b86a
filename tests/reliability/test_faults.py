"""Faults injected while LLM traffic runs, sync (threads) and async (tasks).

What ``tests/integration/test_fail_open.py`` already proves one call at a time (stop,
SIGKILL, SIGSTOP, restart, OOM, corrupt entries), this file proves under concurrent
traffic, and adds dropped connections: ``CLIENT KILL`` of the cache's connections while
commands are in flight, and a TCP proxy that resets every connection and cuts requests
after they reached Redis but before the reply came back.

Every case runs through LangChain (``SemanticCache`` + FakeSupportChatModel) and through
the LlamaIndex wrapper (``llamaindex_semcache.llm.wrap`` + FakeLLM).

For every fault, adapter and driver: 0 failed LLM calls (every call returns the model's
answer, none raises); the time the cache adds to a call (SemanticCache.lookup + update;
for LlamaIndex the engine's lookup + store) is at most one socket timeout until the
breaker opens (p99 of the fault window, over the p99 that healthy calls of the same run
show: thread and event-loop scheduling on a loaded 2-core machine; each call's time less
the process-wide stalls that overlapped it, `StallWatch`), no call pays two, and
the median is under 1 ms while the breaker is open; caching (a write, then a hit on it)
resumes within seconds of recovery; engine.stats() counts one lookup per call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import hashed_embedder
from tests.reliability.conftest import (
    CURRENT_CALL,
    CallLog,
    InstrumentedEngine,
    OwnRedis,
    ProxyProcess,
    StallWatch,
    TimedCache,
    median,
    ms,
    percentile,
    report,
)

COOLDOWN = 0.5  # breaker cooldown: half-open probes happen while the fault lasts
TIMEOUT = 0.1  # the default socket_timeout
SLACK = 0.1  # thread/task scheduling on a loaded 2-core machine, on top of one timeout
# ... plus the p99 of the cache's time in the healthy phase of the same run: under asyncio,
# a task whose reply has arrived waits for the other tasks' turns, fault or no fault.
# Median added latency per call while the breaker is open. An open breaker's bypass does
# no Redis I/O, so what it buys is not paying the socket timeout: the bound is a tenth of
# it, not a micro-benchmark (4 threads on 2 loaded cores put the median near 1 ms).
OPEN_BUDGET = TIMEOUT / 10
WARM = 0.6  # seconds of healthy traffic before the fault
HOLD = 1.2  # seconds the fault lasts
# ... or longer, until it has failed a call: a CLIENT KILL fails only a command in flight
# (redis-py reconnects an idle connection it finds closed), and on a loaded machine the
# traffic of 1.2 s may have none in flight at any of its kills.
HOLD_MAX = 6.0
RESUME_BUDGET = COOLDOWN + 4.0  # caching must resume within this after recovery
THREADS = 4
TASKS = 10
MODEL_LATENCY = 0.01  # the fake provider sleeps this long per miss


@dataclass
class Call:
    started: float  # monotonic
    finished: float
    question: str
    log: CallLog
    ok: bool
    error: str | None


class Fault:
    """A fault: `inject` at the start, `during` every ``period`` while it lasts, `recover`."""

    name = "fault"
    period = 0.0
    breaker_opens = False

    def __init__(self, tmp_path: Path) -> None:
        self.server = OwnRedis(tmp_path / "redis")

    @property
    def url(self) -> str:
        return self.server.url

    def inject(self) -> None: ...

    def during(self) -> None: ...

    def recover(self) -> None: ...

    def close(self) -> None:
        self.server.close()


class SigkillRestart(Fault):
    """kill -9 mid-traffic, then a new server on the same port and data dir."""

    name = "sigkill+restart"
    breaker_opens = True

    def inject(self) -> None:
        self.server.kill()

    def recover(self) -> None:
        self.server.restart()


class SigstopResume(Fault):
    name = "sigstop+sigcont"
    breaker_opens = True

    def inject(self) -> None:
        self.server.pause()

    def recover(self) -> None:
        self.server.resume()


class OutOfMemory(Fault):
    name = "oom(noeviction)"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.admin = self.server.admin()

    def inject(self) -> None:
        self.admin.config_set("maxmemory-policy", "noeviction")
        self.admin.config_set("maxmemory", "1")

    def recover(self) -> None:
        self.admin.config_set("maxmemory", "0")

    def close(self) -> None:
        self.admin.close()
        super().close()


class ClientKill(Fault):
    """CLIENT KILL of every cache connection, every 50 ms, commands in flight or not."""

    name = "client-kill"
    period = 0.05

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.admin = self.server.admin()
        self.killed = 0

    def during(self) -> None:
        self.killed += int(self.admin.client_kill_filter(_type="normal", skipme=True))

    def close(self) -> None:
        self.admin.close()
        super().close()


class ProxyCut(Fault):
    """The cache talks to Redis through a proxy that resets every connection each 100 ms
    and, meanwhile, cuts each request after forwarding it (the reply is lost)."""

    name = "proxy-cut"
    period = 0.1

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.proxy = ProxyProcess(self.server.port)

    @property
    def url(self) -> str:
        return self.proxy.url

    def inject(self) -> None:
        self.proxy.cut_mid_command(True)
        self.proxy.cut_all()

    def during(self) -> None:
        self.proxy.cut_all()

    def recover(self) -> None:
        self.proxy.heal()

    def close(self) -> None:
        self.proxy.close()
        super().close()


FAULTS: dict[str, type[Fault]] = {
    "sigkill": SigkillRestart,
    "sigstop": SigstopResume,
    "oom": OutOfMemory,
    "client_kill": ClientKill,
    "proxy_cut": ProxyCut,
}


@pytest.fixture(params=list(FAULTS))
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fault]:
    made = FAULTS[request.param](tmp_path)
    try:
        yield made
    finally:
        made.close()


class Asker:
    """Asks questions through one framework adapter, sync or async; ``ok`` tells whether
    the answer is the model's own."""

    def __init__(self, url: str, adapter: str) -> None:
        # dims declared: the index is made at construction, so the healthy phase measures
        # calls, not the one-time index creation an undeclared embedder's first store pays.
        self.engine = InstrumentedEngine(
            url,
            embedder=hashed_embedder(),
            dims=16,
            breaker_cooldown=COOLDOWN,
            namespace="faults",
        )
        assert self.engine.config.socket_timeout == TIMEOUT
        self.adapter = adapter
        if adapter == "langchain":
            self.model = FakeSupportChatModel(
                cache=TimedCache(engine=self.engine), latency=MODEL_LATENCY
            )
        else:
            from llamaindex_semcache.llm import wrap
            from semcache_demo.llamaindex_fakes import FakeLLM

            self.inner = FakeLLM(latency=MODEL_LATENCY)
            self.llm = wrap(self.inner, self.engine)

    def ask(self, question: str) -> Any:
        content: Any
        if self.adapter == "langchain":
            content = self.model.invoke(question).content
            expected = self.model.answer(question)
        else:
            from llama_index.core.llms import ChatMessage

            content = self.llm.chat([ChatMessage(role="user", content=question)]).message.content
            expected = self.inner.answer(question)
        return content if content == expected else ValueError(content)

    async def aask(self, question: str) -> Any:
        content: Any
        if self.adapter == "langchain":
            content = (await self.model.ainvoke(question)).content
            expected = self.model.answer(question)
        else:
            from llama_index.core.llms import ChatMessage

            response = await self.llm.achat([ChatMessage(role="user", content=question)])
            content, expected = response.message.content, self.inner.answer(question)
        return content if content == expected else ValueError(content)


@pytest.fixture(params=["langchain", "llamaindex"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _question(worker: int, n: int) -> str:
    # Each question is asked twice in a row: the first ask misses and stores, the second
    # must hit once caching works.
    return f"worker {worker} asks question {n // 2}?"


def _record(calls: list[Call], question: str, log: CallLog, started: float, answer: Any) -> None:
    calls.append(
        Call(
            started=started,
            finished=time.monotonic(),
            question=question,
            log=log,
            ok=isinstance(answer, str),
            error=None if isinstance(answer, str) else repr(answer),
        )
    )


def _ask_sync(asker: Asker, question: str) -> tuple[CallLog, Any]:
    log = CallLog()
    token = CURRENT_CALL.set(log)
    try:
        answer = asker.ask(question)
    except Exception as exc:  # a failed LLM call: what this suite must never see
        answer = exc
    finally:
        CURRENT_CALL.reset(token)
    return log, answer


async def _ask_async(asker: Asker, question: str) -> tuple[CallLog, Any]:
    log = CallLog()
    token = CURRENT_CALL.set(log)
    try:
        answer = await asker.aask(question)
    except Exception as exc:
        answer = exc
    finally:
        CURRENT_CALL.reset(token)
    return log, answer


def _sync_traffic(asker: Asker, stop: threading.Event, calls: list[Call]) -> None:
    """THREADS threads ask until ``stop``; each call is appended to ``calls``."""

    def worker(w: int) -> None:
        n = 0
        while not stop.is_set():
            question = _question(w, n)
            started = time.monotonic()
            log, answer = _ask_sync(asker, question)
            _record(calls, question, log, started, answer)
            n += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()


async def _async_traffic(asker: Asker, stop: threading.Event, calls: list[Call]) -> None:
    """TASKS tasks ask until ``stop``; each call is appended to ``calls``."""

    async def worker(w: int) -> None:
        n = 0
        while not stop.is_set():
            question = _question(w, n)
            started = time.monotonic()
            log, answer = await _ask_async(asker, question)
            _record(calls, question, log, started, answer)
            n += 1
            await asyncio.sleep(0.01)

    await asyncio.gather(*(worker(w) for w in range(TASKS)))


class Timeline:
    """Runs a fault against traffic: warm, inject, hold (with `during`), recover, then
    wait until a fresh write is followed by a hit on it (or the budget runs out)."""

    def __init__(self, fault: Fault, calls_so_far: Callable[[], list[Call]]) -> None:
        self.fault = fault
        self.calls_so_far = calls_so_far
        self.injected = 0.0
        self.recovered = 0.0

    def _reached(self) -> bool:
        """Whether the fault has failed a call yet."""
        return any(c.started >= self.injected and _hurt(c) for c in self.calls_so_far())

    def run(self) -> None:
        time.sleep(WARM)
        self.injected = time.monotonic()
        self.fault.inject()
        end, longest = self.injected + HOLD, self.injected + HOLD_MAX
        while time.monotonic() < end or (time.monotonic() < longest and not self._reached()):
            if self.fault.period:
                self.fault.during()
                time.sleep(self.fault.period)
            else:
                time.sleep(0.02)
        self.fault.recover()
        self.recovered = time.monotonic()
        deadline = self.recovered + RESUME_BUDGET
        while time.monotonic() < deadline and _resumed_at(self.calls_so_far(), self) is None:
            time.sleep(0.05)
        time.sleep(0.2)  # a little traffic after recovery, for the counters


def _hurt(c: Call) -> bool:
    """The fault reached the cache in this call: its lookup failed, or its store."""
    return c.log.lookup_outcome == "error" or c.log.stored is False


def _resumed_at(calls: list[Call], timeline: Timeline) -> float | None:
    """When caching worked again: a hit on an entry that was written after recovery."""
    stored_after = {
        c.question for c in calls if c.started >= timeline.recovered and c.log.stored is True
    }
    hits = [
        c.finished
        for c in calls
        if c.question in stored_after
        and c.started >= timeline.recovered
        and c.log.lookup_outcome == "exact_hit"
    ]
    return min(hits) if hits else None


def _check(
    fault: Fault,
    engine: InstrumentedEngine,
    stats: dict[str, Any],
    calls: list[Call],
    tl: Timeline,
    driver: str,
    watch: StallWatch,
) -> None:
    def added(c: Call) -> float:
        """What the cache added to a call, less the process stalls that overlapped it."""
        return max(0.0, c.log.added - watch.within(c.started, c.finished))

    failed = [c for c in calls if not c.ok]
    assert failed == [], failed[:5]
    faulty = [c for c in calls if tl.injected <= c.started < tl.recovered]
    assert faulty, "no traffic while the fault lasted"
    open_calls = [added(c) for c in calls if c.log.lookup_outcome == "bypass"]
    errors = [c for c in faulty if _hurt(c)]
    assert errors, "the fault never reached the cache"
    if fault.breaker_opens:
        assert open_calls, "the breaker never opened"
    # The cache adds at most one socket timeout to a call while the breaker is closed or
    # half-open ...
    healthy = [added(c) for c in calls if c.finished < tl.injected]
    during = [
        added(c)
        for c in calls
        if tl.injected <= c.started < tl.recovered and c.log.lookup_outcome != "bypass"
    ]
    budget = TIMEOUT + SLACK + percentile(healthy, 0.99)
    slowest = sorted(
        (c for c in calls if tl.injected <= c.started < tl.recovered),
        key=added,
    )[-3:]
    detail = [
        (c.log, round(c.started - tl.injected, 3), round(watch.within(c.started, c.finished), 3))
        for c in slowest
    ]
    # The cache adds at most one socket timeout to a call while the breaker is closed or
    # half-open (p99, over what healthy calls cost), and no call pays two timeouts.
    assert percentile(during, 0.99) <= budget, detail
    assert max(during) <= budget + max(healthy), detail
    # ... and about nothing while it is open.
    if open_calls:
        assert median(open_calls) <= OPEN_BUDGET, sorted(open_calls)[-5:]
    resumed = _resumed_at(calls, tl)
    assert resumed is not None, f"caching did not resume within {RESUME_BUDGET}s"
    resumed_after = resumed - tl.recovered
    assert resumed_after <= RESUME_BUDGET

    tenant = stats["tenants"]["default"]
    assert tenant["requests"] == len(calls)  # one lookup per call, none lost or doubled
    assert tenant["stores"] == sum(1 for c in calls if c.log.stored is True)
    # Every failed lookup is counted once; every store that did not write was either
    # skipped (breaker) or failed (counted as an error).
    assert stats["errors"].get("lookup", 0) == sum(
        1 for c in calls if c.log.lookup_outcome == "error"
    )
    assert tenant["stores_skipped"] + stats["errors"].get("store", 0) == sum(
        1 for c in calls if c.log.stored is False
    )
    healthy_hits = [c for c in calls if c.log.lookup_outcome == "exact_hit"]
    assert healthy_hits, "no hits at all"
    extra: dict[str, Any] = {}
    if isinstance(fault, ClientKill):
        extra["connections_killed"] = fault.killed
    if isinstance(fault, ProxyCut):
        extra["connections_cut"] = fault.proxy.cuts
    report(
        f"{fault.name} ({driver})",
        calls=len(calls),
        calls_during_fault=len(faulty),
        failed_llm_calls=len(failed),
        cache_errors=dict(stats["errors"]),
        bypassed=len(open_calls),
        breaker_opened=engine.breaker.opened_count,
        p99_cache_ms_healthy=ms(percentile(healthy, 0.99)),
        max_added_ms_during_fault=ms(max(during)),
        p99_added_ms_during_fault=ms(percentile(during, 0.99)),
        median_added_ms_open=ms(median(open_calls)),
        p95_added_ms_open=ms(percentile(open_calls, 0.95)),
        caching_resumed_after_s=round(resumed_after, 3),
        process_stalls_ms=ms(sum(late for _, late in watch.stalls)),
        **extra,
    )


def test_fault_under_threaded_traffic(fault: Fault, adapter: str) -> None:
    asker = Asker(fault.url, adapter)
    engine = asker.engine
    stop = threading.Event()
    calls: list[Call] = []
    timeline = Timeline(fault, lambda: list(calls))
    runner = threading.Thread(target=_sync_traffic, args=(asker, stop, calls))
    with StallWatch() as watch:
        runner.start()
        try:
            timeline.run()
        finally:
            stop.set()
            runner.join(timeout=60)
            fault.server.resume()
            stats = engine.stats()
            engine.close()
    assert not runner.is_alive()
    _check(fault, engine, stats, calls, timeline, f"{adapter}, sync, {THREADS} threads", watch)


async def test_fault_under_async_traffic(fault: Fault, adapter: str) -> None:
    asker = Asker(fault.url, adapter)
    engine = asker.engine
    stop = threading.Event()
    calls: list[Call] = []
    timeline = Timeline(fault, lambda: list(calls))
    with StallWatch() as watch:
        traffic = asyncio.create_task(_async_traffic(asker, stop, calls))
        try:
            # The fault runs in a thread: restarting Redis blocks, the event loop must not.
            await asyncio.to_thread(timeline.run)
        finally:
            stop.set()
            await asyncio.wait_for(traffic, timeout=60)
            fault.server.resume()
            stats = engine.stats()
            await engine.aclose()
            engine.close()
    _check(fault, engine, stats, calls, timeline, f"{adapter}, async, {TASKS} tasks", watch)


def test_dropped_connection_mid_command_single_call(own_redis: OwnRedis) -> None:
    """One command, cut after Redis received it: the call is a miss, the next call on a
    fresh connection works (no stale reply read from a half-dead connection)."""
    proxy = ProxyProcess(own_redis.port)
    engine = InstrumentedEngine(proxy.url, embedder=hashed_embedder(), namespace="cut")
    try:
        request = engine.request("stored before the cut")
        assert engine.store(request, b"first")
        proxy.cut_mid_command(True)
        started = time.perf_counter()
        result = engine.lookup(request)
        elapsed = time.perf_counter() - started
        assert result.outcome.value == "error" and result.value is None
        assert elapsed <= TIMEOUT + SLACK
        proxy.heal()
        again = engine.lookup(request)
        assert again.outcome.value == "exact_hit" and again.value == b"first"
        other = engine.request("a different question")
        assert engine.store(other, b"second")
        assert engine.lookup(other).value == b"second"
        assert engine.lookup(request).value == b"first"  # replies not shifted by one
        report("single command cut mid-flight", cut_lookup_ms=ms(elapsed))
    finally:
        engine.close()
        proxy.close()
