"""Helpers for the L1 and coalescing tests, and entry points of their child processes.

Run as ``python -m tests.integration._procs <command> ...``; a child talks to the test
over stdin/stdout, one line per message.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from semcache_core import CacheEngine
from semcache_core._async.coalescing import AsyncCoalescing
from semcache_core._sync.coalescing import SyncCoalescing
from semcache_core.coalesce import Joined, SingleFlight, Ticket
from semcache_core.config import build_config
from semcache_core.l1 import LocalTier
from semcache_core.request import CacheRequest
from semcache_core.storage._async.store import AsyncStore
from semcache_core.storage._sync.store import SyncStore
from semcache_core.storage.l1_subscriber import L1Coherence
from semcache_core.storage.layout import Layout


def l1_channel(prefix: str, namespace: str) -> str:
    return Layout(prefix, namespace).l1_channel


class Coalescer:
    """The engine's coalescing drivers (both), driven by hand with raw clients, the way
    another process of the same namespace would: its own flights, the same locks."""

    def __init__(
        self,
        key_prefix: str,
        namespace: str,
        *,
        wait_timeout: float = 2.0,
        lease: float = 30.0,
        poll_interval: float = 0.02,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = SingleFlight(wait_timeout=wait_timeout, lease=lease, timer=timer)
        self.layout = Layout(key_prefix, namespace)
        self.config = build_config(None, key_prefix=key_prefix, namespace=namespace)
        self.poll_interval = poll_interval
        self._sync = SyncCoalescing(self.local, timer, poll_interval)
        self._async = AsyncCoalescing(self.local, timer, poll_interval)

    @property
    def errors(self) -> int:
        return self._sync.errors + self._async.errors

    def lock_key(self, key: str) -> str:
        return self.layout.lock_key(key)

    def _store(self, client: Any) -> SyncStore | None:
        return None if client is None else SyncStore(client, self.layout, self.config)

    def _astore(self, client: Any) -> AsyncStore | None:
        return None if client is None else AsyncStore(client, self.layout, self.config)

    def begin(self, key: str, client: Any = None) -> Ticket:
        return self._sync.begin(key, self._store(client))

    def join(self, ticket: Ticket, client: Any = None) -> Joined:
        return self._sync.join(ticket, self._store(client))

    def finish(self, key: str, client: Any = None) -> None:
        self._sync.finish(key, self._store(client))

    async def abegin(self, key: str, client: Any = None) -> Ticket:
        return await self._async.begin(key, self._astore(client))

    async def ajoin(self, ticket: Ticket, client: Any = None) -> Joined:
        return await self._async.join(ticket, self._astore(client))

    async def afinish(self, key: str, client: Any = None) -> None:
        await self._async.finish(key, self._astore(client))


def _say(*parts: object) -> None:
    print(*parts, flush=True)


def coalesced_lookup(
    engine: CacheEngine, co: Coalescer, request: CacheRequest, llm: Callable[[], bytes]
) -> dict[str, Any]:
    """What the engine will do once wired: a miss leads or waits, waiters re-read,
    the leader re-reads once (dogpile), calls the LLM, stores, and finishes."""
    started = time.monotonic()
    client = engine._store.client
    key = engine._key(request)
    if engine.lookup(request).hit:
        return {"path": "hit", "seconds": time.monotonic() - started}
    ticket = co.begin(key, client)
    joined: Joined | None = None
    if not ticket.leader:
        joined = co.join(ticket, client)
        waited = time.monotonic() - started
        if engine.lookup(request).hit:
            return {"path": "waited_hit", "joined": joined.value, "seconds": waited}
    elif engine.lookup(request).hit:
        co.finish(key, client)
        return {"path": "lead_hit", "seconds": time.monotonic() - started}
    waited = time.monotonic() - started
    payload = llm()
    engine.store(request, payload)
    co.finish(key, client)
    return {
        "path": "llm",
        "leader": ticket.leader,
        "joined": joined.value if joined else None,
        "waited": waited,
        "seconds": time.monotonic() - started,
    }


async def acoalesced_lookup(
    engine: CacheEngine,
    co: Coalescer,
    request: CacheRequest,
    llm: Callable[[], Awaitable[bytes]],
) -> dict[str, Any]:
    """The async twin of `coalesced_lookup`."""
    started = time.monotonic()
    client = (await engine._astore()).client
    key = engine._key(request)
    if (await engine.alookup(request)).hit:
        return {"path": "hit", "seconds": time.monotonic() - started}
    ticket = await co.abegin(key, client)
    joined: Joined | None = None
    if not ticket.leader:
        joined = await co.ajoin(ticket, client)
        waited = time.monotonic() - started
        if (await engine.alookup(request)).hit:
            return {"path": "waited_hit", "joined": joined.value, "seconds": waited}
    elif (await engine.alookup(request)).hit:
        await co.afinish(key, client)
        return {"path": "lead_hit", "seconds": time.monotonic() - started}
    waited = time.monotonic() - started
    payload = await llm()
    await engine.astore(request, payload)
    await co.afinish(key, client)
    return {
        "path": "llm",
        "leader": ticket.leader,
        "joined": joined.value if joined else None,
        "waited": waited,
        "seconds": time.monotonic() - started,
    }


def l1_holder(url: str, prefix: str, namespace: str) -> None:
    """Hold entries in L1 on request; report when an invalidation removes them.

    stdin: ``hold <key>`` -> reads the key from Redis into L1, answers ``ready``; then
    watches it and answers ``gone <monotonic time> <payload read from Redis now>``.
    ``quit`` ends.
    """
    client = redis.Redis.from_url(url, socket_timeout=5)
    tier = LocalTier(1000, ttl=60.0)
    sub = L1Coherence(tier, l1_channel(prefix, namespace), redis_url=url).start()
    if not sub.wait_connected(10.0):
        _say("error not subscribed")
        return
    _say("subscribed")
    for line in sys.stdin:
        cmd, _, key = line.strip().partition(" ")
        if cmd == "quit":
            break
        since = tier.version
        fields: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
        if not tier.put(key, {k.decode(): v for k, v in fields.items()}, 60.0, since=since):
            _say("error not held")
            continue
        assert tier.get(key) is not None
        _say("ready")
        while tier.get(key) is not None:
            time.sleep(0.0002)
        gone = time.monotonic()
        payload: bytes | None = client.hget(key, "payload")  # type: ignore[assignment]
        _say("gone", repr(gone), (payload or b"").decode())
    sub.stop()
    client.close()


def coalesce_worker(
    url: str, namespace: str, threads: int, llm_seconds: float, wait: float
) -> None:
    """``threads`` threads ask the same cold prompt once ``go`` arrives on stdin; prints
    one JSON line with every thread's path."""
    engine = CacheEngine(url, namespace=namespace)
    co = Coalescer(engine.config.key_prefix, namespace, wait_timeout=wait)
    calls: list[float] = []

    def llm() -> bytes:
        calls.append(time.monotonic())
        time.sleep(llm_seconds)
        return b"the answer"

    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    go = threading.Event()

    def run() -> None:
        go.wait()
        out = coalesced_lookup(engine, co, engine.request("the same cold question"), llm)
        with lock:
            results.append(out)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    _say("ready")
    sys.stdin.readline()
    go.set()
    for w in workers:
        w.join()
    _say(json.dumps({"results": results, "llm_calls": len(calls)}))
    engine.close()


def coalesce_leader_then_hang(url: str, namespace: str, key: str) -> None:
    """Take the leadership of ``key`` and never store: the test SIGKILLs us."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    co = Coalescer("semcache", namespace)
    ticket = co.begin(key, client)
    _say("leading" if ticket.leader else "waiting")
    time.sleep(3600)


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "l1_holder":
        l1_holder(args[0], args[1], args[2])
    elif cmd == "coalesce_worker":
        coalesce_worker(args[0], args[1], int(args[2]), float(args[3]), float(args[4]))
    elif cmd == "coalesce_leader_then_hang":
        coalesce_leader_then_hang(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
