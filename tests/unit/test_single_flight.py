"""Request coalescing in one process, no Redis: `SingleFlight` and a `Coalescer` whose
Redis is down (against Redis: tests/integration/test_coalesce.py).

Time is an injected timer throughout: a waiter gives up when the timer passes its bound,
never because the machine was slow, so nothing here asserts on how long a wait took.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import redis

from semcache_core.coalesce import Joined, Role, SingleFlight
from semcache_core.storage.layout import Layout
from tests.integration._procs import Coalescer


def lock_key(key: str, prefix: str, namespace: str) -> str:
    return Layout(prefix, namespace).lock_key(key)


def test_lock_key_is_outside_the_index_prefix() -> None:
    key = "semcache:ns:tenanttoken:exactkey"
    lk = lock_key(key, "semcache", "ns")
    assert lk == "semcache:__lock__:ns:tenanttoken:exactkey"
    assert not lk.startswith("semcache:ns:")
    with pytest.raises(ValueError):
        lock_key("semcache:other:t:k", "semcache", "ns")


def test_finish_from_a_thread_wakes_asyncio_waiters() -> None:
    # The timer never moves: the waiter cannot time out, only a finish can end its wait.
    flights = SingleFlight(wait_timeout=5.0, timer=lambda: 0.0)
    assert flights.begin("k").leader

    async def wait_for_the_leader() -> Joined:
        ticket = flights.begin("k")
        assert ticket.role is Role.WAITER
        joining = asyncio.ensure_future(flights.ajoin(ticket))
        await asyncio.sleep(0)  # the waiter is parked on its future
        assert not joining.done()
        finisher = threading.Thread(target=flights.finish, args=("k",))
        finisher.start()
        joined = await asyncio.wait_for(joining, 60)  # a hang guard, not a bound
        finisher.join()
        return joined

    assert asyncio.run(wait_for_the_leader()) is Joined.FINISHED
    assert len(flights) == 0


def test_abandon_and_lease_release_the_key() -> None:
    now = [0.0]
    flights = SingleFlight(wait_timeout=1.0, lease=10.0, timer=lambda: now[0])
    t1 = flights.begin("k")
    assert flights.begin("k").role is Role.WAITER
    assert flights.abandon(t1)
    t2 = flights.begin("k")
    assert t2.leader and not flights.abandon(t1)  # an old ticket releases nothing
    now[0] += 10.0  # the lease lapses: the next caller leads
    assert flights.begin("k").leader
    for i in range(300):  # leaders that never finish are swept once their lease lapses
        flights.begin(f"abandoned {i}")
    now[0] += 10.0
    for i in range(300):
        flights.finish(f"other {i}")
        flights.begin(f"fresh {i}")
    assert len(flights) == 300  # only the live ones


def test_an_abandoned_flight_wakes_its_waiters_to_begin_again_within_their_bound() -> None:
    """The timer never moves: only the leader's abandon can end these waits."""
    now = [0.0]
    flights = SingleFlight(wait_timeout=1.0, timer=lambda: now[0])
    leader = flights.begin("k")
    waiters = [flights.begin("k") for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        joins = [pool.submit(flights.join, t) for t in waiters]
        assert flights.abandon(leader)
        joined = [j.result(timeout=60) for j in joins]  # a hang guard, not a bound
    assert joined == [Joined.ABANDONED] * 3
    assert not flights.abandon(leader) and not leader.live
    # They begin again keeping their first bound: one leads, the others wait on it.
    now[0] = 0.4
    again = [flights.begin("k", started=t.started) for t in waiters]
    assert [t.role for t in again] == [Role.LEADER, Role.WAITER, Role.WAITER]
    assert all(t.started == 0.0 for t in again) and again[0].live
    now[0] = 1.0  # the first bound passes: a waiter that began again gives up now
    assert flights.join(again[2]) in (Joined.TOOK_OVER, Joined.TIMED_OUT)
    assert flights.finish("k")


async def test_an_abandon_from_a_thread_wakes_asyncio_waiters() -> None:
    flights = SingleFlight(wait_timeout=5.0, timer=lambda: 0.0)
    leader = flights.begin("k")
    ticket = flights.begin("k")
    joining = asyncio.ensure_future(flights.ajoin(ticket))
    await asyncio.sleep(0)
    threading.Thread(target=flights.abandon, args=(leader,)).start()
    assert await asyncio.wait_for(joining, 60) is Joined.ABANDONED


def test_waiters_of_a_stuck_leader_give_up_at_the_bound_and_one_takes_over() -> None:
    now = [0.0]
    flights = SingleFlight(wait_timeout=0.2, lease=30.0, timer=lambda: now[0])
    assert flights.begin("k").leader  # never finishes
    tickets = [flights.begin("k") for _ in range(5)]
    with ThreadPoolExecutor(5) as pool:
        now[0] = 0.1  # before the bound: everybody keeps waiting
        joins = [pool.submit(flights.join, t) for t in tickets]
        _, waiting = wait(joins, timeout=0.3)
        assert len(waiting) == 5
        now[0] = 0.2  # the bound: each gives up at its next look at the timer
        joined = [j.result(timeout=60) for j in joins]
    assert Counter(joined) == {Joined.TOOK_OVER: 1, Joined.TIMED_OUT: 4}
    assert flights.timeouts == 5 and flights.takeovers == 1
    taker = next(t for t, j in zip(tickets, joined, strict=True) if j is Joined.TOOK_OVER)
    late = flights.begin("k")  # waits on the live taker, not the stuck leader
    assert late.role is Role.WAITER
    threading.Timer(0.05, flights.finish, args=("k",)).start()
    assert flights.join(late) is Joined.FINISHED and taker.leader


def test_redis_down_degrades_to_local_coalescing() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    co = Coalescer("semcache", "ns", wait_timeout=0.5)
    t = co.begin("semcache:ns:t:k", dead)
    assert t.leader and co.errors == 1
    waiter = co.begin("semcache:ns:t:k", dead)
    assert waiter.role is Role.WAITER and not waiter.remote
    co.finish("semcache:ns:t:k", dead)
    assert co.join(waiter, dead) is Joined.FINISHED
    dead.close()
