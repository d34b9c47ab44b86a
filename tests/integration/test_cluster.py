"""semcache on a real loopback Redis Cluster (3 masters, 3 replicas), given one node's
URL, and the same checks on one node.

RediSearch without a coordinator keeps an index on the shard owning its name's slot, so
a namespace on a cluster is B bucket indexes under hash tags (storage/layout.py). These
tests run a LangChain workload of several tenants through ``SemanticCache`` and check
what the issue asks: exact and semantic hits as on one node, zero cross-tenant serves,
entries on every master, ``invalidate(tenant=)`` removing exactly that tenant, and no
entry deleted as corrupt.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langchain_core.messages import HumanMessage
from redis.cluster import RedisCluster

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, Outcome, last_lookup, tenant
from semcache_core.embedded_cluster import EmbeddedCluster
from semcache_core.embedding import SentenceTransformerEmbedder
from semcache_core.entry import parse_search_reply
from semcache_core.errors import SchemaMismatchError
from semcache_core.storage import clients
from semcache_core.transfer import export_entries, import_entries
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import hashed_embedder

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
QUESTIONS = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is your refund policy?", "What's your refund policy?"),
    ("How do I cancel my subscription?", "How can I cancel my subscription?"),
    ("Where can I download my invoices?", "Where do I download my invoices?"),
    ("How do I change my billing address?", "How can I change my billing address?"),
    ("Do you offer a student discount?", "Do you have a student discount?"),
]


@pytest.fixture(params=["node", "cluster"])
def topology_url(request: pytest.FixtureRequest) -> str:
    """One node's URL: the single embedded Redis, or one master of the cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    return str(request.getfixturevalue("redis_url"))


def raw_client(url: str) -> Any:
    probe = redis.Redis.from_url(url, socket_timeout=5)
    try:
        clustered = bool(int(probe.info("cluster").get("cluster_enabled", 0)))
    finally:
        probe.close()
    return RedisCluster.from_url(url, socket_timeout=5) if clustered else redis.Redis.from_url(url)


def corrupt(engine: CacheEngine) -> int:
    return sum(v.get("corrupt_entries", 0) for v in engine.stats(totals=False)["tenants"].values())


def entry_keys(client: Any, engine: CacheEngine) -> list[str]:
    pattern = engine.layout.scan_pattern()
    return sorted(k.decode() for k in client.scan_iter(match=pattern, count=1000))


def ask(model: FakeSupportChatModel, who: str, question: str) -> str:
    with tenant(who):
        return str(model.invoke([HumanMessage(f"[{who}] {question}")]).content)


@pytest.fixture
def cache(
    topology_url: str, namespace: str, embeddings: SentenceTransformerEmbedder
) -> Iterator[SemanticCache]:
    made = SemanticCache(
        redis_url=topology_url, embeddings=embeddings, namespace=namespace, threshold=0.85
    )
    yield made
    made.engine.drop_namespace()
    made.engine.close()


def test_langchain_workload(cache: SemanticCache, topology_url: str) -> None:
    engine = cache.engine
    on_cluster = engine.cluster
    client = raw_client(topology_url)
    model = FakeSupportChatModel(cache=cache)
    try:
        # Every tenant asks every question: misses, stored in its own partition.
        first = {(t, q): ask(model, t, q) for t in TENANTS for q, _ in QUESTIONS}
        calls = model.calls
        # Exact repeats: all hits, each tenant gets its own answer back.
        for (t, q), answer in first.items():
            assert ask(model, t, q) == answer
        assert model.calls == calls, "an exact repeat called the model"
        keys = entry_keys(client, engine)
        assert len(keys) == len(TENANTS) * len(QUESTIONS)
        assert engine.count() == len(keys)
        assert engine.stats()["index"]["entries"] == len(keys)  # every bucket's index
        if on_cluster:
            # Six tenants' partitions spread over several bucket indexes. Which masters
            # own those buckets depends on the namespace's name (random per test), so
            # six partitions land on every master only most of the time: not asserted.
            buckets = {k.split("}", 1)[0] + "}" for k in keys}
            assert len(buckets) >= 3, f"entries in {len(buckets)} buckets"
            assert engine.layout.tagged and engine.layout.buckets == 16
        # Paraphrases: semantic hits, each tenant's own answer, never another's.
        outcomes = []
        for t in TENANTS:
            for q, para in QUESTIONS:
                answer = ask(model, t, para)
                result = last_lookup()
                assert result is not None
                outcomes.append(result.outcome)
                if result.hit:
                    assert result.question == f"[{t}] {q}" and answer == first[(t, q)]
        semantic = outcomes.count(Outcome.SEMANTIC_HIT)
        assert semantic >= len(outcomes) // 2, f"only {semantic}/{len(outcomes)} paraphrases hit"
        assert corrupt(engine) == 0  # nothing deleted as corrupt
        keys = entry_keys(client, engine)

        # invalidate(tenant=) removes exactly that tenant's entries.
        globex = engine.count("globex")
        assert globex >= len(QUESTIONS)
        removed = engine.invalidate(tenant="globex")
        assert removed == globex
        left = entry_keys(client, engine)
        assert len(left) == len(keys) - globex
        assert engine.count("globex") == 0
        assert engine.count("acme") >= len(QUESTIONS)
        for q, _ in QUESTIONS:
            assert ask(model, "acme", q) == first[("acme", q)]
        calls = model.calls
        ask(model, "globex", QUESTIONS[0][0])
        assert model.calls == calls + 1, "an invalidated tenant was served"
    finally:
        client.close()


async def test_async_lookups_and_stores(cache: SemanticCache) -> None:
    engine = cache.engine
    request = engine.request("How do I rotate my API key?", tenant="acme")
    assert (await engine.alookup(request)).outcome == Outcome.MISS
    assert await engine.astore(request, b"Settings > API keys > Rotate.")
    assert (await engine.alookup(request)).outcome == Outcome.EXACT_HIT
    para = engine.request("How can I rotate my API key?", tenant="acme")
    assert (await engine.alookup(para)).outcome == Outcome.SEMANTIC_HIT
    other = engine.request("How can I rotate my API key?", tenant="globex")
    assert not (await engine.alookup(other)).hit
    assert await engine.acount() == 1
    assert await engine.ainvalidate(tenant="acme") == 1
    await engine.aclose()


def test_cluster_is_detected_from_one_node_url(cluster_url: str, namespace: str) -> None:
    engine = CacheEngine(cluster_url, embedder=hashed_embedder(), namespace=namespace, dims=16)
    try:
        assert engine.cluster is True
        meta = json.loads(raw_client(cluster_url).get(engine.layout.meta_key))
        assert meta["layout"] == "cluster" and meta["buckets"] == 16
        req = engine.request("one question")
        assert engine.store(req, b"one answer")
        assert engine.lookup(req).outcome == Outcome.EXACT_HIT
    finally:
        engine.drop_namespace()
        engine.close()


def test_a_different_bucket_count_fails_at_construction(cluster_url: str, namespace: str) -> None:
    first = CacheEngine(cluster_url, embedder=hashed_embedder(), namespace=namespace, dims=16)
    try:
        with pytest.raises(SchemaMismatchError, match="cluster_buckets=16"):
            CacheEngine(
                cluster_url,
                embedder=hashed_embedder(),
                namespace=namespace,
                dims=16,
                cluster_buckets=8,
            )
    finally:
        first.drop_namespace()
        first.close()


def test_single_node_layout_is_unchanged(redis_url: str, namespace: str) -> None:
    """Namespaces made before cluster support keep their keys: one index, no hash tag."""
    engine = CacheEngine(redis_url, embedder=hashed_embedder(), namespace=namespace, dims=16)
    try:
        assert engine.cluster is False and not engine.layout.tagged
        req = engine.request("q")
        assert engine.key(req).startswith(f"semcache:{namespace}:")
        assert "{" not in engine.key(req)
        assert engine.layout.index_name == f"semcache:{namespace}:idx"
    finally:
        engine.drop_namespace()
        engine.close()


def test_export_from_one_node_import_into_the_cluster(
    redis_url: str, cluster_url: str, namespace: str, embeddings: SentenceTransformerEmbedder
) -> None:
    node = CacheEngine(redis_url, embedder=embeddings, namespace=namespace)
    cluster = CacheEngine(cluster_url, embedder=embeddings, namespace=namespace)
    try:
        for i, who in enumerate(TENANTS):
            q, _ = QUESTIONS[i]
            assert node.store(node.request(q, tenant=who), f"{who}: {q}".encode())
        out = io.StringIO()
        assert export_entries(node, out) == len(TENANTS)
        assert import_entries(cluster, out.getvalue().splitlines()) == len(TENANTS)
        for i, who in enumerate(TENANTS):
            q, para = QUESTIONS[i]
            exact = cluster.lookup(cluster.request(q, tenant=who))
            assert exact.outcome == Outcome.EXACT_HIT and exact.value == f"{who}: {q}".encode()
            semantic = cluster.lookup(cluster.request(para, tenant=who))
            assert semantic.outcome == Outcome.SEMANTIC_HIT
        assert cluster.count() == len(TENANTS)
    finally:
        for engine in (node, cluster):
            engine.drop_namespace()
            engine.close()


def test_nil_fields_are_a_miss_not_a_corrupt_entry() -> None:
    """RediSearch without a coordinator answers nil fields for a document another shard
    holds: such a result is left out (a miss), never handed on to be deleted as corrupt."""
    reply = [2, b"semcache:ns:a:1", None, b"semcache:ns:a:2", [b"payload", b"x"]]
    assert parse_search_reply(reply) == [("semcache:ns:a:2", {"payload": b"x"})]
    resp3 = {"results": [{"id": b"k1", "extra_attributes": {}}, {"id": b"k2"}]}
    assert parse_search_reply(resp3) == []
    keys_only = [2, b"k1", b"k2"]
    assert [k for k, _ in parse_search_reply(keys_only, content=False)] == ["k1", "k2"]


def test_failover_fails_open_then_caching_resumes(
    failover_cluster: EmbeddedCluster, namespace: str
) -> None:
    engine = CacheEngine(
        failover_cluster.url,
        embedder=hashed_embedder(),
        namespace=namespace,
        dims=16,
        breaker_cooldown=0.2,
    )
    try:
        requests = [engine.request(f"question {i}", tenant=f"t{i % 7}") for i in range(60)]
        for r in requests:
            assert engine.store(r, b"answer")
        client = RedisCluster.from_url(failover_cluster.url, socket_timeout=5)
        by_master = {engine.key(r): client.get_node_from_key(engine.key(r)).port for r in requests}
        client.close()
        victim = failover_cluster.masters()[1].port
        on_victim = [r for r in requests if by_master[engine.key(r)] == victim]
        assert on_victim, "no entry on the master to kill"
        failover_cluster.kill(victim)
        # While the master is down: every call returns (hit or miss), none raises.
        outcomes = [engine.lookup(r).outcome for r in requests]
        assert set(outcomes) <= {Outcome.EXACT_HIT, Outcome.ERROR, Outcome.BYPASS}
        failover_cluster.wait_for_failover(victim, timeout=30)
        # The client's slot map still names the dead master: its first calls fail open
        # (and make redis-py reload the map), then caching resumes on the same client.
        deadline = time.monotonic() + 15
        probe = on_victim[0]
        while engine.lookup(probe).outcome in (Outcome.ERROR, Outcome.BYPASS):
            assert time.monotonic() < deadline, "caching did not resume after the failover"
            time.sleep(0.25)
        fresh = engine.request("asked after the failover", tenant="t1")
        assert engine.store(fresh, b"new answer")
        assert engine.lookup(fresh).outcome == Outcome.EXACT_HIT
        # Entries replicated before the kill are served by the promoted replica.
        hits = sum(engine.lookup(r).outcome == Outcome.EXACT_HIT for r in requests)
        assert hits >= len(requests) - len(on_victim)
    finally:
        engine.close()


async def test_concurrent_first_async_calls_share_one_client(
    topology_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent first calls in a loop all await one opening (a cluster client learns the
    slot map there): one client is made, none is closed under a call, and every call is
    served. Patient timeouts: the test is about sharing, not about a loaded machine's
    connects (16 calls open connections to three masters at once)."""
    engine = CacheEngine(
        topology_url,
        embedder=hashed_embedder(),
        namespace=namespace,
        dims=16,
        connect_timeout=5.0,
        socket_timeout=2.0,
    )
    made: list[object] = []
    real = clients.make_async_client

    def counted(*args: object, **kwargs: object) -> object:
        made.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(clients, "make_async_client", counted)
    try:
        requests = [engine.request(f"first wave {i}", tenant="acme") for i in range(16)]
        stored = await asyncio.gather(*(engine.astore(r, b"answer") for r in requests))
        assert all(stored), f"{stored.count(False)} of 16 first stores failed"
        assert len(made) == 1, f"{len(made)} clients made for one event loop"
        results = await asyncio.gather(*(engine.alookup(r) for r in requests))
        assert [r.outcome for r in results] == [Outcome.EXACT_HIT] * 16
        assert engine.stats(totals=False)["errors"] == {}
    finally:
        await engine.adrop_namespace()
        await engine.aclose()
        engine.close()


async def test_aclose_after_a_timed_out_command_closes_every_connection(
    failover_cluster: EmbeddedCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that times out leaves redis.asyncio's cluster client due to learn the
    slot map again, and its own ``aclose`` does nothing then: an engine closed right
    after a timed-out lookup left every node's connections open (unclosed transports,
    reported at garbage collection). Its own cluster (the masters are paused)."""
    engine = CacheEngine(
        failover_cluster.url, embedder=hashed_embedder(), namespace=namespace, dims=16
    )
    made: list[Any] = []
    real = clients.make_async_client

    def kept(*args: Any, **kwargs: Any) -> Any:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(clients, "make_async_client", kept)
    requests = [engine.request(f"question {i}", tenant=f"t{i}") for i in range(24)]
    for r in requests:  # connections to every master
        assert await engine.astore(r, b"answer")
    pids = [node.pid for node in failover_cluster.masters() if node.pid is not None]
    assert len(pids) == 3
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        timed_out = await engine.alookup(engine.request("asked while paused", tenant="t1"))
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert timed_out.outcome == Outcome.ERROR
    [client] = made
    assert client._initialize, "the timeout did not leave the client due to re-learn the map"
    connections = [
        conn
        for nodes in (client.nodes_manager.nodes_cache, client.nodes_manager.startup_nodes)
        for node in nodes.values()
        for conn in node._connections
    ]
    assert sum(conn.is_connected for conn in connections) >= 2
    await engine.aclose()
    engine.close()
    assert [c for c in connections if c.is_connected] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        made.clear()
        del client, connections
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
