"""A deadline per user call: with every Redis reply late (but none past the timeout), a
lookup that misses plus the store of the model's answer add at most ``socket_timeout``
plus 20 ms to the call, instead of a timeout's worth per round trip.

Real parts: the test's own embedded Redis behind a proxy that holds every reply
(`tests.reliability.proxy --delay`), the real engine and its real clients. A fast fake
embedder: these tests are about round trips, not similarity.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from semcache_core import CacheEngine
from semcache_core.config import CacheConfig
from semcache_core.core.rules import Outcome
from semcache_core.deadline import (
    STORE_FLOOR,
    BudgetSlot,
    CallBudget,
    TripClock,
    lookup_budget,
    spending,
    store_budget,
)
from semcache_core.storage.clients import make_async_client, make_client
from semcache_core.storage.deadline import BudgetSpent
from tests.conftest import hashed_embedder
from tests.reliability.conftest import OwnRedis, StallWatch, median, ms, report
from tests.reliability.proxy import DelayProxyProcess

TIMEOUT = 0.1  # the default socket_timeout
DELAY_MS = 80.0  # each reply: under the timeout, so no single trip times out
BOUND = TIMEOUT + 0.020  # what the issue allows a lookup and its store to add
SLACK = 0.030  # thread and task scheduling on a loaded 2-core machine (beyond the
# stalls of the whole process, which `StallWatch` takes out of each call)
CALLS = 8


def _served_after_healing(engine: CacheEngine, proxy: DelayProxyProcess) -> None:
    proxy.set_delay(0)
    request = engine.request("asked when Redis is quick again")
    assert engine.lookup(request).outcome is Outcome.MISS
    assert engine.store(request, b"quick")
    assert engine.lookup(request).value == b"quick"


def test_a_miss_and_its_store_add_at_most_one_timeout_when_redis_is_slow_sync(
    own_redis: OwnRedis,
) -> None:
    proxy = DelayProxyProcess(own_redis.port)
    engine = CacheEngine(proxy.url, embedder=hashed_embedder(), namespace="slow")
    try:
        warm = engine.request("set up the index while Redis is quick")
        assert engine.store(warm, b"warm")
        assert engine.lookup(warm).value == b"warm"
        proxy.set_delay(DELAY_MS)
        added, outcomes = [], []
        with StallWatch() as stalls:  # a stall of this whole process is not the cache's
            for i in range(CALLS):
                request = engine.request(f"question {i}, asked while every reply is late")
                started = time.monotonic()
                outcomes.append(engine.lookup(request).outcome)
                engine.store(request, b"answer")
                finished = time.monotonic()
                added.append(finished - started - stalls.within(started, finished))
        report("slow Redis, sync", median_ms=ms(median(added)), worst_ms=ms(max(added)))
        # Misses, or lookups cut short (served as misses), never a bypass: slow is not
        # sick, the breaker stays closed. And the call pays one timeout, not one per trip.
        assert set(outcomes) <= {Outcome.MISS, Outcome.ERROR}, outcomes
        assert max(added) <= BOUND + SLACK, [ms(a) for a in added]
        _served_after_healing(engine, proxy)
    finally:
        engine.close()
        proxy.close()


async def test_a_miss_and_its_store_add_at_most_one_timeout_when_redis_is_slow_async(
    own_redis: OwnRedis,
) -> None:
    proxy = DelayProxyProcess(own_redis.port)
    engine = await CacheEngine.acreate(proxy.url, embedder=hashed_embedder(), namespace="aslow")
    try:
        warm = engine.request("set up the index while Redis is quick")
        assert await engine.astore(warm, b"warm")
        assert (await engine.alookup(warm)).value == b"warm"
        proxy.set_delay(DELAY_MS)
        added, outcomes = [], []
        with StallWatch() as stalls:
            for i in range(CALLS):
                request = engine.request(f"question {i}, asked while every reply is late")
                started = time.monotonic()
                outcomes.append((await engine.alookup(request)).outcome)
                await engine.astore(request, b"answer")
                finished = time.monotonic()
                added.append(finished - started - stalls.within(started, finished))
        report("slow Redis, async", median_ms=ms(median(added)), worst_ms=ms(max(added)))
        assert set(outcomes) <= {Outcome.MISS, Outcome.ERROR}, outcomes
        assert max(added) <= BOUND + SLACK, [ms(a) for a in added]
        proxy.set_delay(0)
        request = engine.request("asked when Redis is quick again")
        assert (await engine.alookup(request)).outcome is Outcome.MISS
        assert await engine.astore(request, b"quick")
        assert (await engine.alookup(request)).value == b"quick"
    finally:
        await engine.aclose()
        proxy.close()


def test_replies_later_than_the_timeout_cost_one_timeout_and_a_short_store(
    own_redis: OwnRedis,
) -> None:
    """Every reply later than the timeout: the lookup's read is cut at the timeout, the
    store gets its short try, and the call adds about one timeout."""
    proxy = DelayProxyProcess(own_redis.port)
    engine = CacheEngine(proxy.url, embedder=hashed_embedder(), namespace="slower")
    try:
        warm = engine.request("set up the index while Redis is quick")
        assert engine.store(warm, b"warm")
        proxy.set_delay(3 * TIMEOUT * 1000)
        request = engine.request("a question no reply comes back for in time")
        started = time.perf_counter()
        assert engine.lookup(request).outcome is Outcome.ERROR
        assert not engine.store(request, b"answer")
        added = time.perf_counter() - started
        report("replies later than the timeout", added_ms=ms(added))
        assert added <= TIMEOUT + STORE_FLOOR + SLACK
    finally:
        engine.close()
        proxy.close()


@pytest.mark.parametrize("topology", ["node", "cluster"])
def test_every_client_the_engine_makes_keeps_the_budget(
    topology: str, own_redis: OwnRedis, request: pytest.FixtureRequest
) -> None:
    """One node or a cluster's nodes, sync and async: a spent budget refuses the trip
    before anything is sent (the connection stays usable), and outside a call's budget
    the same client works as before."""
    cluster = topology == "cluster"
    url = str(request.getfixturevalue("cluster_url")) if cluster else own_redis.url
    config = CacheConfig(redis_url=url)
    spent = CallBudget(0.0, TripClock())
    client = make_client(config, cluster=cluster)
    try:
        client.set("semcache-budget-probe", b"1")
        with spending(spent), pytest.raises(BudgetSpent):
            client.get("semcache-budget-probe")
        assert spent.cut
        roomy = CallBudget(TIMEOUT, TripClock())
        with spending(roomy):
            assert client.get("semcache-budget-probe") == b"1"
        assert 0.0 < roomy.left < TIMEOUT  # the read was charged
        if cluster:  # every node, the one that taught the client its slot map included
            for node in client.get_nodes():
                with spending(CallBudget(0.0, TripClock())), pytest.raises(BudgetSpent):
                    client.execute_command("PING", target_nodes=node)
    finally:
        client.close()

    async def on_async() -> None:
        aclient = make_async_client(config, cluster=cluster)
        try:
            await aclient.set("semcache-budget-probe", b"2")
            with spending(CallBudget(0.0, TripClock())), pytest.raises(BudgetSpent):
                await aclient.get("semcache-budget-probe")
            roomy = CallBudget(TIMEOUT, TripClock())
            with spending(roomy):
                assert await aclient.get("semcache-budget-probe") == b"2"
            assert 0.0 < roomy.left < TIMEOUT
            if cluster:
                for node in aclient.get_nodes():
                    with spending(CallBudget(0.0, TripClock())), pytest.raises(BudgetSpent):
                        await aclient.execute_command("PING", target_nodes=node)
        finally:
            await aclient.aclose()

    asyncio.run(on_async())


def test_a_flush_the_deadline_refuses_is_kept_for_later_not_an_error(own_redis: OwnRedis) -> None:
    """The counters' flush after a lookup shares the call's budget; refused, its counts
    wait for the next flush (the soak once counted it as a "stats" error)."""
    engine = CacheEngine(own_redis.url, namespace="flush")
    try:
        engine.lookup(engine.request("a question, counted"))
        with spending(CallBudget(0.0, TripClock())):
            engine._cache.flush_counts(force=True)
        stats = engine.stats()  # flushes through the administration store
        assert stats["errors"] == {}
        assert stats["tenants"]["default"]["requests"] == 1
    finally:
        engine.close()


def test_the_budget_never_starts_a_trip_it_expects_to_cut() -> None:
    """Pure: the fastest recent trip is what the next one costs at least; a
    store gets what its lookup left, at least the floor; each lookup its own budget."""
    now = [100.0]
    trips = TripClock(clock=lambda: now[0])
    slot = BudgetSlot()
    budget = lookup_budget(slot, TIMEOUT, trips)
    assert budget.may_start()
    budget.charge(0.080)
    assert budget.left == pytest.approx(0.020)
    assert not budget.may_start() and budget.cut  # 20 ms left, trips take 80
    store = store_budget(slot, TIMEOUT, trips)
    assert store is not budget and store.left == pytest.approx(0.020)
    budget.charge(0.030, timed_out=True)
    assert store_budget(slot, TIMEOUT, trips).left == pytest.approx(STORE_FLOOR)
    assert store_budget(BudgetSlot(), TIMEOUT, trips).left == TIMEOUT  # no lookup: all of it
    floor = store_budget(slot, TIMEOUT, trips)
    assert not floor.may_start()  # 10 ms left, trips take 80
    now[0] += 2.0  # a second later, the next trip's time replaces the slow one
    lookup_budget(BudgetSlot(), TIMEOUT, trips).charge(0.001)
    assert trips.fastest() == pytest.approx(0.001)
    floor = store_budget(slot, TIMEOUT, trips)
    assert floor.may_start()
    assert floor.timeout(TIMEOUT) == pytest.approx(STORE_FLOOR)
    again = lookup_budget(slot, TIMEOUT, trips)  # a second lookup: a budget of its own
    assert again is not budget and again.left == TIMEOUT and budget.left < 0


def test_a_refused_trip_is_not_a_redis_timeout() -> None:
    """redis-py drops a connection on its own TimeoutError (and a cluster client counts a
    node failure); a refused trip sent nothing, so it must not look like one."""
    assert not issubclass(BudgetSpent, (redis.TimeoutError, redis.ConnectionError))
