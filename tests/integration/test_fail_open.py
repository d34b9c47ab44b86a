"""Fail-open against a real, misbehaving Redis.

Every test starts its own embedded Redis in ``tmp_path`` and breaks it (SHUTDOWN, SIGKILL,
SIGSTOP, a restart, corrupt entries, refused writes); the session server is never touched.
The claims: a broken cache never turns into an exception for the user's LLM call, costs at
most one socket timeout per call until the breaker opens and about nothing after, and
caching resumes by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from langchain_semcache import SemanticCache
from semcache_core import CacheConfig, CacheEngine, CallableEmbedder, Outcome, SerializationError
from semcache_core.embedded import EmbeddedRedis, start_embedded_redis
from semcache_core.resilience import BreakerState
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import constant_embedder, hashed_embedder
from tests.integration.drivers import DrivenEngine, Driver

DEFAULT_TIMEOUT = CacheConfig.model_fields["socket_timeout"].default
SLACK = 0.15  # scheduling and LangChain overhead allowed on top of one socket timeout
COOLDOWN = 0.5
OPEN_BREAKER_BUDGET = 0.001  # what a lookup may cost while the breaker is open
SAMPLES = 20


class OwnRedis:
    """A test's private embedded Redis that remembers whether it paused the server, so
    teardown can always SIGCONT it before stopping it."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.server: EmbeddedRedis = start_embedded_redis(
            data_dir, port=port, reuse=False, stop_at_exit=True
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

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, then wait (bounded) until the port refuses connections."""
        self.resume()
        os.kill(self.pid, signal.SIGKILL)
        _wait_refused(self.url)

    def close(self) -> None:
        self.resume()
        self.server.stop(timeout=5.0)  # reaps a killed server; no-op if already stopped


def _wait_refused(url: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            client.ping()
        except redis.ConnectionError:
            return
        finally:
            client.close()
        time.sleep(0.01)
    raise AssertionError(f"{url} still answers {timeout}s after SIGKILL")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.close()


def _raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def _entry_keys(engine: CacheEngine | DrivenEngine) -> list[str]:
    with _raw(engine.config.redis_url) as client:
        return sorted(
            k.decode() for k in client.scan_iter(match=engine.layout.scan_pattern(), count=1000)
        )


def _tenant_stats(engine: CacheEngine | DrivenEngine) -> dict[str, Any]:
    stats: dict[str, Any] = engine.stats(totals=False)["tenants"]["default"]
    return stats


def _median_seconds(call: Callable[[int], Any], n: int = SAMPLES) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _amedian_seconds(call: Callable[[int], Awaitable[Any]], n: int = SAMPLES) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _wait_breaker_not_open(engine: CacheEngine) -> None:
    deadline = time.monotonic() + COOLDOWN + 2.0
    while engine.breaker.state is BreakerState.OPEN:
        assert time.monotonic() < deadline, "the breaker did not leave OPEN after its cooldown"
        time.sleep(0.01)


def _served_from_cache(message: Any) -> dict[str, Any] | None:
    marker: dict[str, Any] | None = message.response_metadata.get("semcache")
    return marker


def _report(label: str, **seconds: float) -> None:
    parts = ", ".join(f"{name}={value * 1000:.3f} ms" for name, value in seconds.items())
    print(f"\n[timing] {label}: {parts}")


# -- 1. a stopped server -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
async def test_stopped_server_serves_the_model_answer(own_redis: OwnRedis, how: str) -> None:
    cache = SemanticCache(redis_url=own_redis.url, embeddings=hashed_embedder())
    engine = cache.engine
    model = FakeSupportChatModel(cache=cache)
    try:
        if how == "shutdown":
            own_redis.server.stop(timeout=5.0)
        else:
            own_redis.kill()
        question = "How do I reset my password?"

        answer = model.invoke(question)
        assert answer.content == model.answer(question)
        assert _served_from_cache(answer) is None
        assert model.calls == 1

        aanswer = await model.ainvoke(question)
        assert aanswer.content == model.answer(question)
        assert model.calls == 2

        stats = engine.stats(totals=False)
        assert stats["errors"] == {"lookup": 2}  # one per lookup; the writes were not tried
        tenant = _tenant_stats(engine)
        assert tenant["errors"] == 2
        assert tenant["requests"] == 2
        assert tenant["stores"] == 0
        assert tenant["stores_skipped"] == 2
    finally:
        await engine.aclose()
        engine.close()


# -- 2. a paused server: one timeout per call, then the breaker ------------------------------
def test_paused_server_costs_one_timeout_per_call_then_nothing(own_redis: OwnRedis) -> None:
    cache = SemanticCache(
        redis_url=own_redis.url, embeddings=hashed_embedder(), breaker_cooldown=COOLDOWN
    )
    engine = cache.engine
    timeout = engine.config.socket_timeout
    assert timeout == DEFAULT_TIMEOUT == 0.1
    model = FakeSupportChatModel(cache=cache)
    plain = FakeSupportChatModel(cache=False)
    try:
        model.invoke("warm up")  # pooled connection, index ready, LangChain imports done
        baseline = _median_seconds(lambda i: plain.invoke(f"baseline {i}"))

        own_redis.pause()
        slow = []
        for i in range(engine.config.breaker_failures):
            assert engine.breaker.state is BreakerState.CLOSED
            question = f"asked while paused {i}"
            started = time.perf_counter()
            answer = model.invoke(question)
            slow.append(time.perf_counter() - started)
            assert answer.content == model.answer(question)
        assert engine.breaker.state is BreakerState.OPEN
        for seconds in slow:
            assert seconds <= timeout + SLACK, slow
            # The lookup timed out; the update of the same invoke did not wait again.
            assert seconds < 2 * timeout, slow
        assert engine.stats(totals=False)["errors"] == {"lookup": engine.config.breaker_failures}
        assert _tenant_stats(engine)["stores_skipped"] == engine.config.breaker_failures

        request = engine.request("asked while the breaker is open")
        results = []

        def timed_lookup(i: int) -> None:
            results.append(engine.lookup(request))

        lookup_median = _median_seconds(timed_lookup)
        assert {r.outcome for r in results} == {Outcome.BYPASS}
        assert lookup_median <= OPEN_BREAKER_BUDGET
        assert statistics.median(r.seconds for r in results) <= OPEN_BREAKER_BUDGET
        open_invoke = _median_seconds(lambda i: model.invoke(f"breaker open {i}"))
        assert open_invoke - baseline < timeout / 10  # no socket wait at all
        _report(
            "sync, paused Redis",
            baseline_invoke=baseline,
            added_per_invoke_before_open=statistics.median(slow) - baseline,
            lookup_median_open=lookup_median,
            added_per_invoke_open=open_invoke - baseline,
        )

        own_redis.resume()
        _wait_breaker_not_open(engine)
        question = "asked after Redis came back"
        calls = model.calls
        first = model.invoke(question)
        assert model.calls == calls + 1
        assert _served_from_cache(first) is None
        assert engine.breaker.state is BreakerState.CLOSED  # type: ignore[comparison-overlap]
        again = model.invoke(question)
        assert model.calls == calls + 1
        marker = _served_from_cache(again)
        assert marker is not None and marker["layer"] == "exact"
        assert again.content == first.content
    finally:
        own_redis.resume()
        engine.close()


async def test_paused_server_costs_one_timeout_per_call_then_nothing_async(
    own_redis: OwnRedis,
) -> None:
    cache = SemanticCache(
        redis_url=own_redis.url, embeddings=hashed_embedder(), breaker_cooldown=COOLDOWN
    )
    engine = cache.engine
    timeout = engine.config.socket_timeout
    model = FakeSupportChatModel(cache=cache)
    plain = FakeSupportChatModel(cache=False)
    try:
        await model.ainvoke("warm up")  # this loop's client connected, index ready
        baseline = await _amedian_seconds(lambda i: plain.ainvoke(f"baseline {i}"))

        own_redis.pause()
        slow = []
        for i in range(engine.config.breaker_failures):
            assert engine.breaker.state is BreakerState.CLOSED
            question = f"asked while paused {i}"
            started = time.perf_counter()
            answer = await model.ainvoke(question)
            slow.append(time.perf_counter() - started)
            assert answer.content == model.answer(question)
        assert engine.breaker.state is BreakerState.OPEN
        for seconds in slow:
            assert seconds <= timeout + SLACK, slow
            assert seconds < 2 * timeout, slow
        assert engine.stats(totals=False)["errors"] == {"lookup": engine.config.breaker_failures}

        request = engine.request("asked while the breaker is open")
        results = []

        async def timed_lookup(i: int) -> None:
            results.append(await engine.alookup(request))

        lookup_median = await _amedian_seconds(timed_lookup)
        assert {r.outcome for r in results} == {Outcome.BYPASS}
        assert lookup_median <= OPEN_BREAKER_BUDGET
        open_invoke = await _amedian_seconds(lambda i: model.ainvoke(f"breaker open {i}"))
        assert open_invoke - baseline < timeout / 10
        _report(
            "async, paused Redis",
            baseline_invoke=baseline,
            added_per_invoke_before_open=statistics.median(slow) - baseline,
            lookup_median_open=lookup_median,
            added_per_invoke_open=open_invoke - baseline,
        )

        own_redis.resume()
        deadline = time.monotonic() + COOLDOWN + 2.0
        while engine.breaker.state is BreakerState.OPEN:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        question = "asked after Redis came back"
        calls = model.calls
        first = await model.ainvoke(question)
        assert model.calls == calls + 1
        assert engine.breaker.state is BreakerState.CLOSED
        again = await model.ainvoke(question)
        assert model.calls == calls + 1
        marker = _served_from_cache(again)
        assert marker is not None and marker["layer"] == "exact"
        assert again.content == first.content
    finally:
        own_redis.resume()
        await engine.aclose()
        engine.close()


# -- 3. a restarted server ---------------------------------------------------------------------
def _wait_in_aof(data_dir: Path, needle: bytes, timeout: float = 3.0) -> None:
    """Wait until the AOF on disk holds ``needle`` (written, if not yet fsynced)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in data_dir.rglob("*.aof"):
            if needle in path.read_bytes():
                return
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} never reached the AOF in {data_dir}")


def _poll_caching_resumes(model: FakeSupportChatModel, budget: float) -> tuple[bool, float]:
    """Ask fresh questions twice each until the second ask is served from the cache."""
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < budget:
        question = f"asked after the restart {i}"
        model.invoke(question)
        calls = model.calls
        if _served_from_cache(model.invoke(question)) is not None and model.calls == calls:
            return True, time.perf_counter() - started
        i += 1
        time.sleep(0.05)
    return False, time.perf_counter() - started


def test_killed_server_restarted_on_same_port_and_dir_resumes_caching(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    first = OwnRedis(data_dir)
    second: OwnRedis | None = None
    cache = SemanticCache(
        redis_url=first.url, embeddings=hashed_embedder(), breaker_cooldown=COOLDOWN
    )
    engine = cache.engine
    model = FakeSupportChatModel(cache=cache)
    try:
        model.invoke("stored before the crash")
        _wait_in_aof(data_dir, b"stored before the crash")
        first.kill()
        for i in range(engine.config.breaker_failures):
            question = f"asked while down {i}"
            assert model.invoke(question).content == model.answer(question)
        assert engine.breaker.state is BreakerState.OPEN
        first.close()  # reaps the killed process and forgets its server.json

        second = OwnRedis(data_dir, port=first.port)
        assert second.url == first.url
        resumed, elapsed = _poll_caching_resumes(model, budget=COOLDOWN + 3.0)
        assert resumed, engine.stats(totals=False)
        assert elapsed <= COOLDOWN + 1.0
        _report("restart on same port and data dir", caching_resumed_after=elapsed)
        assert engine.breaker.state is BreakerState.CLOSED  # type: ignore[comparison-overlap]
        # The same data dir: the entry written before the crash is still served.
        calls = model.calls
        old = model.invoke("stored before the crash")
        assert model.calls == calls
        assert _served_from_cache(old) is not None
    finally:
        engine.close()
        first.close()
        if second is not None:
            second.close()


def test_server_restarted_empty_on_same_port_resumes_caching(tmp_path: Path) -> None:
    first = OwnRedis(tmp_path / "redis")
    second: OwnRedis | None = None
    cache = SemanticCache(
        redis_url=first.url, embeddings=hashed_embedder(), breaker_cooldown=COOLDOWN
    )
    engine = cache.engine
    model = FakeSupportChatModel(cache=cache)
    try:
        model.invoke("stored before the crash")
        first.kill()
        first.close()
        # A Redis without persistence (or a fresh replica) comes back with no data: the
        # engine must notice the lost index and create it again.
        second = OwnRedis(tmp_path / "fresh", port=first.port)
        resumed, elapsed = _poll_caching_resumes(model, budget=COOLDOWN + 3.0)
        assert resumed, engine.stats(totals=False)
        assert elapsed <= COOLDOWN + 1.0
        _report("restart on same port, empty data", caching_resumed_after=elapsed)
        with _raw(second.url) as client:
            assert engine.layout.index_name.encode() in client.execute_command("FT._LIST")
    finally:
        engine.close()
        first.close()
        if second is not None:
            second.close()


# -- 4. corrupt entries ------------------------------------------------------------------------
def _damage(url: str, key: str, how: str) -> None:
    with _raw(url) as client:
        if how == "garbage_payload":
            client.hset(key, "payload", b"\xff\x00 not a serialized answer {")
        else:
            assert client.hdel(key, "v") == 1


@pytest.mark.parametrize("how", ["garbage_payload", "missing_v"])
def test_corrupt_exact_entry_is_deleted_and_the_model_answers(
    own_redis: OwnRedis, how: str
) -> None:
    cache = SemanticCache(redis_url=own_redis.url, embeddings=hashed_embedder())
    engine = cache.engine
    model = FakeSupportChatModel(cache=cache)
    seen: list[tuple[str, str]] = []
    lookup = cache.lookup

    def spy(prompt: str, llm_string: str) -> Any:
        seen.append((prompt, llm_string))
        return lookup(prompt, llm_string)

    cache.lookup = spy  # type: ignore[method-assign]
    question = "What is your refund policy?"
    try:
        model.invoke(question)
        assert model.calls == 1
        [key] = _entry_keys(engine)
        _damage(own_redis.url, key, how)

        assert lookup(*seen[0]) is None  # a miss, not an exception
        assert _entry_keys(engine) == []  # the corrupt entry was deleted
        assert _tenant_stats(engine)["corrupt_entries"] == 1

        answer = model.invoke(question)  # the LangChain call still gets the model's answer
        assert answer.content == model.answer(question)
        assert _served_from_cache(answer) is None
        assert model.calls == 2
        assert _tenant_stats(engine)["corrupt_entries"] == 1
        # ... and its update replaced the entry with a good one.
        again = model.invoke(question)
        assert model.calls == 2
        assert _served_from_cache(again) is not None
        assert engine.stats(totals=False)["errors"] == {}
    finally:
        engine.close()


def _json(payload: bytes, codec: str) -> Any:
    """A decoder as the contract wants it: a payload it cannot read is a
    `SerializationError` (corrupt), anything else would be a decode error."""
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise SerializationError(f"not JSON: {exc}") from exc


@pytest.mark.parametrize("how", ["garbage_payload", "missing_v"])
def test_corrupt_semantic_candidate_is_deleted_and_skipped(
    own_redis: OwnRedis, how: str, driver: Driver
) -> None:
    # Every question gets the same vector: the stored entry is the probe's nearest neighbour.
    engine = driver.make(CacheEngine, own_redis.url, embedder=constant_embedder(), threshold=0.5)

    def lookup(request: Any) -> Any:
        return engine.lookup(request, decode=_json)

    try:
        stored = engine.request("prompt A", question="shared question")
        probe = engine.request("prompt B", question="shared question")
        assert engine.store(stored, b'"good"')
        hit = lookup(probe)
        assert hit.outcome is Outcome.SEMANTIC_HIT and hit.value == "good"
        key = engine.key(stored)
        assert hit.key == key

        _damage(own_redis.url, key, how)
        result = lookup(probe)
        assert result.outcome is Outcome.MISS
        assert result.value is None
        assert _entry_keys(engine) == []
        assert _tenant_stats(engine)["corrupt_entries"] == 1
        assert engine.stats(totals=False)["errors"] == {}

        assert engine.store(stored, b'"fresh"')
        fresh = lookup(probe)
        assert fresh.outcome is Outcome.SEMANTIC_HIT and fresh.value == "fresh"
    finally:
        engine.close()  # aclose on the async run


# -- 5. a fault in the middle of an operation --------------------------------------------------
TRIGGER = "this question pauses Redis"


def _pausing_embedder(server: OwnRedis) -> CallableEmbedder:
    """Embeds like `hashed_embedder`; embedding TRIGGER pauses the server. The engine
    embeds after the exact-layer HMGET and before FT.SEARCH (lookup), and after setup and
    before the write (store), so the fault lands between two Redis commands."""
    inner = hashed_embedder()

    def embed(text: str) -> list[float]:
        if text == TRIGGER:
            server.pause()
        return inner.embed(text)

    return CallableEmbedder(embed, model_id="pausing")


@pytest.mark.parametrize("kind", ["lookup", "store"])
def test_fault_mid_operation_does_not_raise(
    own_redis: OwnRedis, kind: str, driver: Driver
) -> None:
    engine = driver.make(CacheEngine, own_redis.url, embedder=_pausing_embedder(own_redis))
    timeout = engine.config.socket_timeout
    try:
        request = engine.request(TRIGGER)
        started = time.perf_counter()
        if kind == "lookup":
            result: Any = engine.lookup(request)
        else:
            result = engine.store(request, b"answer")
        elapsed = time.perf_counter() - started
        assert own_redis.paused, "the fault was not injected"
        assert elapsed <= timeout + SLACK

        if kind == "lookup":
            assert result.outcome is Outcome.ERROR
            assert result.value is None
        else:
            assert result is False
            assert _tenant_stats(engine)["stores"] == 0
        assert engine.stats(totals=False)["errors"] == {kind: 1}
        assert _tenant_stats(engine)["errors"] == 1
        assert engine.breaker.state is BreakerState.CLOSED  # one failure of three

        own_redis.resume()
        # A later call goes through: the fault did not poison the engine.
        follow_up = engine.request("asked after the fault")
        assert engine.lookup(follow_up).outcome is Outcome.MISS
        assert engine.store(follow_up, b"later")
        assert engine.lookup(follow_up).outcome is Outcome.EXACT_HIT
    finally:
        own_redis.resume()
        engine.close()  # aclose on the async run


def test_write_refused_by_redis_is_skipped(own_redis: OwnRedis, driver: Driver) -> None:
    """Redis answers with an error (OOM under maxmemory): the store is skipped, reads go on."""
    engine = driver.make(CacheEngine, own_redis.url, embedder=hashed_embedder())
    admin = _raw(own_redis.url)
    try:
        request = engine.request("asked while Redis is out of memory")
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        assert engine.store(request, b"answer") is False
        assert engine.lookup(request).outcome is Outcome.MISS
        errors = engine.stats(totals=False)["errors"]
        # The persisted counters' write is refused too, and counted, without pausing writes.
        assert errors["store"] == 1 and set(errors) <= {"store", "stats"}
        assert _entry_keys(engine) == []
        admin.config_set("maxmemory", "0")
        assert engine.store(request, b"answer")
        assert engine.lookup(request).outcome is Outcome.EXACT_HIT
    finally:
        admin.close()
        engine.close()  # aclose on the async run
