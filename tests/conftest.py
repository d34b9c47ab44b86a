"""Shared fixtures. Tests that need Redis get the real embedded server (Redis 8 with
RediSearch), started once per session; if it cannot start, the fixture raises and those
tests fail loudly. Nothing here skips."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from semcache_core import CacheEngine, start_embedded_cluster, start_embedded_redis
from semcache_core.embedded import EmbeddedRedis
from semcache_core.embedded_cluster import EmbeddedCluster
from semcache_core.embedding import CallableEmbedder, SentenceTransformerEmbedder, minilm


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_embedded_redis(tmp_path_factory.mktemp("redis"), reuse=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> str:
    """The session Redis's URL; in modules that run on both topologies
    (tests/integration/conftest.py), ``[cluster]`` runs get one master's URL of the
    loopback cluster instead."""
    if getattr(request, "param", "node") == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A loopback Redis Cluster (3 masters, each with 1 replica, RediSearch on every node)
    shared by the session and started on first use (~3 s), so tests without it pay nothing.
    Its topology must stay as formed: never kill or fail over its nodes here; a test that
    does takes ``failover_cluster``. Keys are shared too: use the test's ``namespace``."""
    cluster = start_embedded_cluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cluster_url(redis_cluster: EmbeddedCluster) -> str:
    """One master's plain URL (``redis://127.0.0.1:<port>/0``), the way users configure it."""
    return redis_cluster.url


@pytest.fixture
def failover_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A cluster of the test's own (3 masters, 3 replicas, ``cluster-node-timeout`` 1 s), for
    tests that kill nodes: breaking it cannot break the shared ``redis_cluster``. Costs a
    cluster start (~3 s) per test; stopped afterwards, killed nodes included."""
    cluster = start_embedded_cluster(tmp_path, masters=3, replicas=1, node_timeout_ms=1000)
    yield cluster
    cluster.stop()


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[Any]:
    """A plain client for looking at what the cache wrote (a cluster client on a
    cluster)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    if int(client.info("cluster").get("cluster_enabled", 0)):
        client.close()
        client = RedisCluster.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture(scope="session")
def embeddings() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, for every test about similarity."""
    return minilm()


class CountingEmbeddings:
    """A LangChain-style embeddings object that records what it was asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = "counting"
        self.texts: list[str] = []
        self.async_texts: list[str] = []

    def embed_query(self, text: str) -> list[float]:
        self.texts.append(text)
        return list(self.inner.embed(text))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        self.async_texts.append(text)
        return list(await self.inner.aembed(text))


@pytest.fixture
def counting_embeddings(embeddings: SentenceTransformerEmbedder) -> CountingEmbeddings:
    return CountingEmbeddings(embeddings)


def constant_embedder(dims: int = 8) -> CallableEmbedder:
    """Every text gets the same vector: for tests about isolation, not similarity."""
    vec = [1.0] + [0.0] * (dims - 1)
    return CallableEmbedder(lambda text: vec, model_id=f"constant-{dims}")


def hashed_embedder(dims: int = 16) -> CallableEmbedder:
    """Unrelated texts get unrelated vectors; identical texts identical ones."""

    def embed(text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8])
        return list(np.random.default_rng(seed).standard_normal(dims))

    return CallableEmbedder(embed, model_id=f"hashed-{dims}")


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


# The Redis wait an engine of `make_engine` may add to one call, unless the test sets its
# own: the shipped 0.1 s is a production budget, and a CI machine with two cores running a
# six-node cluster can take longer than that to answer (a timed-out read is a miss, which a
# test of thresholds or isolation would read as the cache deciding wrongly). Tests of the
# budget itself pass ``socket_timeout`` (tests/integration/test_admin_patience.py).
PATIENT_SOCKET_TIMEOUT = 2.0


@pytest.fixture
def make_engine(redis_url: str, namespace: str) -> Iterator[Callable[..., CacheEngine]]:
    """Engines on the session Redis in this test's own namespace, dropped afterwards, with
    ``socket_timeout`` `PATIENT_SOCKET_TIMEOUT` unless the test sets it."""
    made: list[CacheEngine] = []

    def _make(**kwargs: Any) -> CacheEngine:
        kwargs.setdefault("namespace", namespace)
        kwargs.setdefault("socket_timeout", PATIENT_SOCKET_TIMEOUT)
        engine = CacheEngine(redis_url, **kwargs)
        made.append(engine)
        return engine

    yield _make
    for engine in made:
        engine.close()
    for ns in {e.config.namespace for e in made}:
        cleaner = CacheEngine(redis_url, namespace=ns, validate=False)
        cleaner.drop_index()
        cleaner.close()


def delete_totals(client: Any, prefix: str, namespace: str) -> int:
    """Remove a namespace's persisted counters with a raw client (test cleanup)."""
    keys = list(client.scan_iter(match=f"{prefix}:__stats__:{namespace}:*", count=1000))
    return sum(int(client.unlink(k)) for k in keys)
