"""Request coalescing against the real Redis, in threads, tasks and processes (in one
process without Redis: tests/unit/test_single_flight.py).

The flow under test is the one the engine runs once wired (``_procs.coalesced_lookup``):
lookup miss -> `begin` (`semcache_core._async.coalescing` and its sync twin); the
leader calls the "LLM", stores and finishes;
waiters `join` and look up again. Claims: 16 threads, 50 tasks, and 4 processes x 4
threads asking one cold key make exactly one LLM call while the leader stores within
``wait_timeout`` (every waiter released by the store, none by the bound); a leader that
dies (SIGKILL) holds everybody until ``wait_timeout`` passes on the coalescer's
(injected) clock and nobody after it, and the first waiter to give up takes the lock
over for later arrivals.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from semcache_core import CacheEngine, Outcome
from semcache_core.coalesce import Joined, Role
from semcache_core.storage.layout import Layout
from tests.integration._procs import Coalescer, acoalesced_lookup, coalesced_lookup
from tests.integration.drivers import Driver


def lock_key(key: str, prefix: str, namespace: str) -> str:
    return Layout(prefix, namespace).lock_key(key)


ROOT = Path(__file__).resolve().parents[2]
LLM_SECONDS = 0.3


def _co(engine: CacheEngine, **kw: Any) -> Coalescer:
    return Coalescer(engine.config.key_prefix, engine.config.namespace, **kw)


# -- against Redis, one process -----------------------------------------------------------
# The two hand-driven flows are twins, one per driver: threads are how the sync driver is
# called concurrently, tasks on one loop how the async one is; neither runs the other's.
def test_16_threads_one_leader(make_engine: Callable[..., CacheEngine]) -> None:
    engine = make_engine()
    co = _co(engine)
    calls: list[int] = []

    def llm() -> bytes:
        calls.append(1)
        time.sleep(LLM_SECONDS)
        return b"answer"

    barrier = threading.Barrier(16)

    def ask(_: int) -> dict[str, Any]:
        barrier.wait()
        return coalesced_lookup(engine, co, engine.request("one cold question"), llm)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, range(16)))
    paths = Counter(r["path"] for r in results)
    waits = [r["seconds"] for r in results if r["path"] == "waited_hit"]
    print(
        f"\n16 threads: {len(calls)} LLM call(s), paths {dict(paths)}, waiters waited "
        f"p50 {statistics.median(waits) * 1000:.0f} ms"
    )
    assert len(calls) == 1 and co.local.leaders == 1
    assert paths == {"llm": 1, "waited_hit": 15}
    # Released by the leader's store, none by the bound (wait_timeout, 2 s).
    assert [r["joined"] for r in results if r["path"] == "waited_hit"] == ["finished"] * 15
    assert not engine._store.client.exists(
        co.lock_key(engine._key(engine.request("one cold question")))
    )


async def test_50_tasks_one_leader(make_engine: Callable[..., CacheEngine]) -> None:
    engine = make_engine()
    co = _co(engine)
    calls: list[int] = []

    async def llm() -> bytes:
        calls.append(1)
        await asyncio.sleep(LLM_SECONDS)
        return b"answer"

    request = engine.request("one cold async question")
    results = await asyncio.gather(
        *(acoalesced_lookup(engine, co, request, llm) for _ in range(50))
    )
    paths = Counter(r["path"] for r in results)
    print(f"\n50 tasks: {len(calls)} LLM call(s), paths {dict(paths)}")
    assert len(calls) == 1 and co.local.leaders == 1
    assert paths == {"llm": 1, "waited_hit": 49}
    assert [r["joined"] for r in results if r["path"] == "waited_hit"] == ["finished"] * 49
    await engine.aclose()


@pytest.mark.parametrize("mode", ["process", "redis"])
def test_the_engines_own_coalescing_makes_one_llm_call(
    make_engine: Callable[..., CacheEngine], driver: Driver, mode: str
) -> None:
    """``coalesce=`` wired into the engine: 16 concurrent identical misses (threads on
    the sync driver, tasks on the async one) make one LLM call; the waiters are served
    the leader's answer."""
    engine = driver.make(make_engine, coalesce=mode, coalesce_wait=5.0)
    raw = engine.engine
    request = engine.request("one cold question, coalesced by the engine")
    calls: list[int] = []

    def ask(_: int) -> Outcome:
        result = raw.lookup(request)
        if not result.hit:
            calls.append(1)
            time.sleep(LLM_SECONDS)
            raw.store(request, b"answer")
        return result.outcome

    async def aask(_: int) -> Outcome:
        result = await raw.alookup(request)
        if not result.hit:
            calls.append(1)
            await asyncio.sleep(LLM_SECONDS)
            await raw.astore(request, b"answer")
        return result.outcome

    outcomes = driver.concurrently(16, ask, aask)
    assert len(calls) == 1
    assert Counter(outcomes) == {Outcome.MISS: 1, Outcome.EXACT_HIT: 15}
    stats = engine.stats(totals=False)
    assert stats["coalesce"]["leaders"] == 1 and stats["coalesce"]["waiters"] == 15
    assert stats["tenants"]["default"]["requests"] == 16  # each counted once
    assert not raw._store.client.exists(raw.layout.lock_key(raw.key(request)))


# -- across processes ---------------------------------------------------------------------
def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration._procs", *args],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )  # fmt: skip


def _reap(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(10)
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()


def test_4_processes_one_leader(redis_url: str, make_engine: Callable[..., CacheEngine]) -> None:
    engine = make_engine()  # creates the index before the children start
    ns = engine.config.namespace
    children = [
        _spawn("coalesce_worker", redis_url, ns, "4", str(LLM_SECONDS), "2.0") for _ in range(4)
    ]
    try:
        for c in children:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        for c in children:  # as close to "at once" as pipes allow
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        outs = []
        for c in children:
            assert c.stdout is not None
            outs.append(json.loads(c.stdout.readline()))
            assert c.wait(30) == 0
    finally:
        for c in children:
            _reap(c)
    llm_calls = sum(o["llm_calls"] for o in outs)
    paths = Counter(r["path"] for o in outs for r in o["results"])
    print(f"\n4 processes x 4 threads: {llm_calls} LLM call(s), paths {dict(paths)}")
    assert llm_calls == 1
    assert paths["llm"] == 1 and paths["waited_hit"] + paths["hit"] == 15


def test_a_killed_leader_blocks_nobody_past_the_bound(
    redis_url: str, make_engine: Callable[..., CacheEngine]
) -> None:
    engine = make_engine()
    wait = 1.0
    now = [0.0]  # the coalescer's clock: the bound passes when the test says so
    co = _co(engine, wait_timeout=wait, poll_interval=0.02, timer=lambda: now[0])
    request = engine.request("the leader of this one dies")
    key = engine._key(request)
    client = engine._store.client
    leader = _spawn("coalesce_leader_then_hang", redis_url, engine.config.namespace, key)
    try:
        assert leader.stdout is not None and leader.stdout.readline().strip() == "leading"
        assert client.pttl(co.lock_key(key)) > 20_000  # a long lease: only the bound helps
        leader.kill()
        leader.wait(10)

        # 4 threads here: one polls the dead process's lock, three wait on it locally.
        outcomes: list[tuple[Role, Joined]] = []

        def ask() -> None:
            ticket = co.begin(key, client)
            outcomes.append((ticket.role, co.join(ticket, client)))

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(10_000):  # until all four have begun
            if co.local.leaders + co.local.waiters == 4:
                break
            time.sleep(0.001)
        now[0] = wait - 0.01  # just before the bound: the dead lock holds everybody
        time.sleep(0.3)  # many polls of the lock
        assert outcomes == []
        now[0] = wait  # the bound: everybody is released
        for t in threads:
            t.join(30)
    finally:
        _reap(leader)
    joined = Counter(j for _, j in outcomes)
    print(f"\nleader SIGKILLed: outcomes at the bound {dict(joined)}")
    assert len(outcomes) == 4
    assert joined[Joined.TOOK_OVER] == 1  # the process took the dead leader's lock over
    assert joined[Joined.FINISHED] == 0  # nobody was told the dead leader had stored

    # The lock now belongs to the live taker: a later arrival waits on it, and its store
    # releases that arrival at once.
    taker = client.get(co.lock_key(key))
    assert taker is not None and client.pttl(co.lock_key(key)) > 20_000
    other = _co(engine, wait_timeout=5.0)  # another process's view: no shared local state
    late = other.begin(key, client)
    assert late.role is Role.WAITER and late.remote

    def store_and_finish() -> None:
        engine.store(request, b"x")
        co.finish(key, client)

    threading.Timer(0.1, store_and_finish).start()
    # Finished (the lock went with the store), not timed out after its 5 s bound.
    assert other.join(late, client) is Joined.FINISHED
    assert engine.lookup(request).hit
