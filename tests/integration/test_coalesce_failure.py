"""Coalescing when the leader's LLM call fails.

Before: the leader never stored, so every waiter sat out the whole ``coalesce_wait``
(2 s by default) and then called the LLM itself (all of them), a sequential retry waited 2 s for a
flight nobody led, and the Redis lock lived on for its 30 s lease. Now the leader's
failure ends its leadership (`CacheEngine.abandon`, which the LangChain adapter calls from
the run's ``on_llm_error`` and the LlamaIndex wrapper from its own ``except``): the
waiters are released at once, one of them leads the next call and the others wait for it,
and the lock is deleted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from llama_index.core.llms import ChatMessage

from langchain_semcache import SemanticCache
from llamaindex_semcache.llm import wrap
from semcache_core import CacheEngine, LookupResult
from semcache_demo.langchain_fakes import FakeSupportChatModel
from semcache_demo.llamaindex_fakes import FakeLLM
from tests.integration.drivers import Driver

LLM_SECONDS = 0.1
# coalesce_wait: what every waiter used to sit out. Twice the default, so "well under
# it" (WAIT / 2) leaves a wide margin on a loaded machine (the callers take 0.2-0.5 s).
WAIT = 4.0
CALLERS = 12


class Failing:
    """The first call fails after ``LLM_SECONDS``; the others answer after as long."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0

    def first(self) -> bool:
        with self.lock:
            self.calls += 1
            return self.calls == 1


def _lock_exists(raw: redis.Redis, engine: CacheEngine, request: Any) -> bool:
    return bool(raw.exists(engine.layout.lock_key(engine.key(request))))


# -- the engine API ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["process", "redis"])
def test_a_failed_leader_releases_its_waiters_and_one_leads_next(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver, mode: str
) -> None:
    engine = driver.make(make_engine, coalesce=mode, coalesce_wait=WAIT)
    raw = engine.engine
    request = engine.request("the leader of this one fails")
    llm = Failing()

    def ask(_: int) -> tuple[str, float]:
        started = time.monotonic()
        result = raw.lookup(request)
        if result.hit:
            return "hit", time.monotonic() - started
        fails = llm.first()
        time.sleep(LLM_SECONDS)
        if fails:
            assert result.leads and raw.abandon(result)
            return "failed", time.monotonic() - started
        raw.store(request, b"answer")
        return "llm", time.monotonic() - started

    async def aask(_: int) -> tuple[str, float]:
        started = time.monotonic()
        result = await raw.alookup(request)
        if result.hit:
            return "hit", time.monotonic() - started
        fails = llm.first()
        await asyncio.sleep(LLM_SECONDS)
        if fails:
            assert result.leads and await raw.aabandon(result)
            return "failed", time.monotonic() - started
        await raw.astore(request, b"answer")
        return "llm", time.monotonic() - started

    out = driver.concurrently(CALLERS, ask, aask)
    paths = Counter(path for path, _ in out)
    slowest = max(seconds for _, seconds in out)
    print(f"\n{mode}: paths {dict(paths)}, slowest caller {slowest * 1000:.0f} ms")
    # One failed call, one retry by a released waiter, everybody else served by it.
    assert paths == {"failed": 1, "llm": 1, "hit": CALLERS - 1 - 1}
    assert llm.calls == 2
    assert slowest < WAIT / 2  # two LLM calls and some scheduling, not the 2 s bound
    assert not _lock_exists(raw_redis, raw, request)
    stats = engine.stats(totals=False)
    assert stats["tenants"]["default"]["requests"] == CALLERS  # each counted once


@pytest.mark.parametrize("mode", ["process", "redis"])
def test_after_a_failed_leader_the_next_caller_leads_at_once(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver, mode: str
) -> None:
    """A sequential retry after the failure used to wait the full 2 s for the dead
    flight; the lock is gone the moment the leader gives up."""
    engine = driver.make(make_engine, coalesce=mode, coalesce_wait=WAIT)
    request = engine.request("retried after a failure")
    first: LookupResult = engine.lookup(request)
    assert first.leads and not first.hit
    assert _lock_exists(raw_redis, engine.engine, request) is (mode == "redis")
    assert engine.abandon(first) is True
    assert not _lock_exists(raw_redis, engine.engine, request)
    assert engine.abandon(first) is False  # once: nothing is held any more
    started = time.monotonic()
    second = engine.lookup(request)
    assert time.monotonic() - started < WAIT / 4
    assert second.leads  # it leads itself, no wait
    engine.store(request, b"answer")
    assert not _lock_exists(raw_redis, engine.engine, request)
    assert engine.abandon(second) is False  # stored: the store ended the leadership
    assert engine.lookup(request).hit and not engine.lookup(request).leads


def test_across_processes_a_failed_leader_frees_the_pollers(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    """Two engines on one namespace stand for two processes: B's callers wait on A's
    Redis lock by polling it. A's failure deletes the lock; one of B's callers takes it
    and calls the LLM, the others are served by it."""
    a = driver.make(make_engine, coalesce="redis", coalesce_wait=WAIT)
    b = driver.make(make_engine, coalesce="redis", coalesce_wait=WAIT)
    request = a.request("two processes, one failing leader")
    lead = a.lookup(request)
    assert lead.leads
    calls: list[int] = []

    def ask(i: int) -> tuple[str, float]:
        started = time.monotonic()
        if i == 0:
            time.sleep(0.2)
            a.engine.abandon(lead)
            return "abandoned", 0.0
        result = b.engine.lookup(request)
        if result.hit:
            return "hit", time.monotonic() - started
        calls.append(1)
        time.sleep(LLM_SECONDS)
        b.engine.store(request, b"answer")
        return "llm", time.monotonic() - started

    async def aask(i: int) -> tuple[str, float]:
        started = time.monotonic()
        if i == 0:
            await asyncio.sleep(0.2)
            await a.engine.aabandon(lead)
            return "abandoned", 0.0
        result = await b.engine.alookup(request)
        if result.hit:
            return "hit", time.monotonic() - started
        calls.append(1)
        await asyncio.sleep(LLM_SECONDS)
        await b.engine.astore(request, b"answer")
        return "llm", time.monotonic() - started

    out = driver.concurrently(8, ask, aask)
    paths = Counter(path for path, _ in out)
    slowest = max(seconds for _, seconds in out)
    print(f"\nacross processes: paths {dict(paths)}, slowest {slowest * 1000:.0f} ms")
    assert paths == {"abandoned": 1, "llm": 1, "hit": 6}
    assert len(calls) == 1
    assert slowest < WAIT / 2


# -- LangChain: the run's on_llm_error ends the leadership ------------------------------
class FlakyChatModel(FakeSupportChatModel):
    """Fails its first call (a provider error), then answers."""

    failing: Any = None

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        fails = self.failing.first()
        time.sleep(LLM_SECONDS)
        if fails:
            raise RuntimeError("provider unavailable")
        return self._respond(messages, **kwargs)

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        fails = self.failing.first()
        await asyncio.sleep(LLM_SECONDS)
        if fails:
            raise RuntimeError("provider unavailable")
        return self._respond(messages, **kwargs)


def _outcomes(results: list[Any]) -> Counter[str]:
    return Counter("raised" if isinstance(r, RuntimeError) else "answered" for r in results)


@pytest.mark.parametrize("mode", ["process", "redis"])
@pytest.mark.parametrize("api", ["sync", "async"])
def test_langchain_waiters_do_not_sit_out_a_failed_call(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, mode: str, api: str
) -> None:
    engine = make_engine(coalesce=mode, coalesce_wait=WAIT)
    llm = Failing()
    model = FlakyChatModel(cache=SemanticCache(engine=engine), failing=llm)
    question = "What does the failing provider say?"
    started = time.monotonic()
    if api == "sync":
        barrier = threading.Barrier(CALLERS)

        def call(_: int) -> Any:
            barrier.wait()
            try:
                return model.invoke(question)
            except RuntimeError as exc:
                return exc

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(CALLERS) as pool:
            results = list(pool.map(call, range(CALLERS)))
    else:

        async def calls() -> list[Any]:
            out = await asyncio.gather(
                *(model.ainvoke(question) for _ in range(CALLERS)), return_exceptions=True
            )
            await asyncio.sleep(0.05)  # the lock's release, scheduled by on_llm_error
            return list(out)

        results = asyncio.run(calls())
    seconds = time.monotonic() - started
    print(f"\nLangChain {api} {mode}: {dict(_outcomes(results))}, {seconds * 1000:.0f} ms")
    assert _outcomes(results) == {"raised": 1, "answered": CALLERS - 1}
    assert llm.calls == 2  # the failed call and one retry, not one per waiter
    assert seconds < WAIT / 2
    assert not _lock_exists(raw_redis, engine, engine.request("x"))  # no lock of any key
    assert not list(raw_redis.scan_iter(match=f"*__lock__:{engine.config.namespace}:*"))


def _locks(raw: redis.Redis, engine: CacheEngine) -> list[bytes]:
    return list(raw.scan_iter(match=f"*__lock__:{engine.config.namespace}:*"))


@pytest.mark.parametrize("api", ["sync", "async"])
def test_langchain_a_failed_call_leaves_no_lock_behind(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, api: str
) -> None:
    """One call, and it fails: the Redis lock goes with it (it used to stay for its 30 s
    lease), and a retry leads at once (it used to wait 2 s for the dead flight)."""
    engine = make_engine(coalesce="redis", coalesce_wait=WAIT)
    llm = Failing()
    model = FlakyChatModel(cache=SemanticCache(engine=engine), failing=llm)
    question = "Is the provider up yet?"
    if api == "sync":
        with pytest.raises(RuntimeError):
            model.invoke(question)
        assert _locks(raw_redis, engine) == []
        started = time.monotonic()
        model.invoke(question)
        retry = time.monotonic() - started
    else:

        async def calls() -> tuple[list[bytes], float]:
            with pytest.raises(RuntimeError):
                await model.ainvoke(question)
            for _ in range(50):  # the release runs as a task on this loop, at once
                if not _locks(raw_redis, engine):
                    break
                await asyncio.sleep(0.01)
            left = _locks(raw_redis, engine)
            started = time.monotonic()
            await model.ainvoke(question)
            return left, time.monotonic() - started

        left, retry = asyncio.run(calls())
        assert left == []
    assert retry < WAIT / 4
    assert llm.calls == 2


# -- LlamaIndex: the wrapper sees the exception itself ----------------------------------
class FlakyLLM(FakeLLM):
    failing: Any = None

    def _begin(self) -> None:
        fails = self.failing.first()
        time.sleep(LLM_SECONDS)
        if fails:
            raise RuntimeError("provider unavailable")

    async def _abegin(self) -> None:
        fails = self.failing.first()
        await asyncio.sleep(LLM_SECONDS)
        if fails:
            raise RuntimeError("provider unavailable")


@pytest.mark.parametrize("mode", ["process", "redis"])
@pytest.mark.parametrize("api", ["sync", "async"])
def test_llamaindex_waiters_do_not_sit_out_a_failed_call(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, mode: str, api: str
) -> None:
    engine = make_engine(coalesce=mode, coalesce_wait=WAIT)
    llm = Failing()
    wrapped = wrap(FlakyLLM(failing=llm), engine)
    messages = [ChatMessage(role="user", content="What does the failing provider say?")]
    started = time.monotonic()
    if api == "sync":
        barrier = threading.Barrier(CALLERS)

        def call(_: int) -> Any:
            barrier.wait()
            try:
                return wrapped.chat(messages)
            except RuntimeError as exc:
                return exc

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(CALLERS) as pool:
            results = list(pool.map(call, range(CALLERS)))
    else:

        async def calls() -> list[Any]:
            out = await asyncio.gather(
                *(wrapped.achat(messages) for _ in range(CALLERS)), return_exceptions=True
            )
            return list(out)

        results = asyncio.run(calls())
    seconds = time.monotonic() - started
    print(f"\nLlamaIndex {api} {mode}: {dict(_outcomes(results))}, {seconds * 1000:.0f} ms")
    assert _outcomes(results) == {"raised": 1, "answered": CALLERS - 1}
    assert llm.calls == 2
    assert seconds < WAIT / 2
    assert not list(raw_redis.scan_iter(match=f"*__lock__:{engine.config.namespace}:*"))
