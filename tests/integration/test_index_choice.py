"""The index choice (issue 14, "Semantic hits" and "Recall").

A namespace with ``algorithm="auto"`` (the default) starts FLAT and, past
``flat_max_entries``, is rebuilt as HNSW beside it by ordinary calls, with no step of
the user's: every entry stays findable, by the engine that switched and by one that
only learns of the switch when its old index is gone. Lookups find the nearest
in-scope entry (checked against brute force with numpy) on random unit vectors under
every index choice. Runs on one node and on the loopback cluster
(tests/integration/conftest.py). Correctness only: speed is benchmarks/speed.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from semcache_core import CacheEngine, Outcome
from semcache_core.embedding import CallableEmbedder
from semcache_core.storage import index_choice

DIMS = 32


class Table:
    """An embedder of known vectors: ``e<i>`` is entry i, ``q<j>`` query j."""

    def __init__(self, entries: np.ndarray, queries: np.ndarray) -> None:
        self.vectors = {f"e{i}": v for i, v in enumerate(entries)}
        self.vectors.update({f"q{j}": v for j, v in enumerate(queries)})

    def embedder(self) -> CallableEmbedder:
        return CallableEmbedder(lambda text: self.vectors[text].tolist(), model_id="table")


def accept(query: str, candidate: str) -> bool:
    """Serve the nearest candidate above the threshold: the question texts are labels
    (``e1``, ``q1``), which the built-in verifier would rightly refuse."""
    return True


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def near(rng: np.random.Generator, twins: np.ndarray, low: float, high: float) -> np.ndarray:
    """A unit vector per twin at cosine similarity in [low, high] to it."""
    noise = rng.standard_normal(twins.shape).astype(np.float32)
    noise -= (noise * twins).sum(axis=1, keepdims=True) * twins
    noise = unit(noise)
    c = rng.uniform(low, high, (len(twins), 1)).astype(np.float32)
    return unit(c * twins + np.sqrt(1 - c**2) * noise)


def store_all(engine: CacheEngine, n: int, start: int = 0) -> None:
    for i in range(start, n):
        assert engine.store(engine.request(f"prompt e{i}", question=f"e{i}"), f"{i}".encode())


def served(engine: CacheEngine, j: int) -> int | None:
    result = engine.lookup(engine.request(f"prompt q{j}", question=f"q{j}"))
    assert result.outcome is not Outcome.ERROR, result
    return int(result.value) if result.hit else None


def wait_for(check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def index_names(engine: CacheEngine) -> set[str]:
    """Every RediSearch index on every master (each shard lists its own)."""
    client: Any = engine._store.client
    if engine.cluster:
        replies = client.execute_command("FT._LIST", target_nodes=client.get_primaries())
        lists = replies.values() if isinstance(replies, dict) else [replies]
        return {n.decode() for names in lists for n in names}
    return {n.decode() for n in client.execute_command("FT._LIST")}


def test_a_new_namespace_starts_flat(make_engine: Callable[..., CacheEngine]) -> None:
    rng = np.random.default_rng(1)
    table = Table(unit(rng.standard_normal((3, DIMS))), unit(rng.standard_normal((1, DIMS))))
    engine = make_engine(embedder=table.embedder(), verifier=accept, dims=DIMS)
    store_all(engine, 3)
    status = engine.index_status()
    assert (status["algorithm"], status["generation"], status["building"]) == ("flat", 0, None)
    assert sum(status["entries"]) == 3
    pinned = make_engine(
        embedder=table.embedder(),
        verifier=accept,
        dims=DIMS,
        namespace=f"{engine.config.namespace}h",
        algorithm="hnsw",
    )
    store_all(pinned, 1)
    assert pinned.index_status()["algorithm"] == "hnsw"


def test_growing_past_flat_max_entries_switches_to_hnsw_by_itself(
    make_engine: Callable[..., CacheEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    n, limit = 90, 40
    rng = np.random.default_rng(2)
    entries = unit(rng.standard_normal((n, DIMS)))
    table = Table(entries, near(rng, entries, 0.96, 0.99))
    monkeypatch.setattr(index_choice, "REFRESH_SECONDS", 0.0)  # refresh on every call
    grower = make_engine(
        embedder=table.embedder(), verifier=accept, dims=DIMS, flat_max_entries=limit
    )
    # Another process, set up on the FLAT index before the switch.
    other = make_engine(
        embedder=table.embedder(), verifier=accept, dims=DIMS, flat_max_entries=limit
    )
    store_all(grower, limit)
    assert served(other, 0) == 0
    assert grower.index_status()["algorithm"] == "flat"
    old = set(index_names(grower))
    store_all(grower, n, start=limit)  # past the limit: the rebuild starts
    status = grower.index_status()
    # Started (a few entries index at once: it may even have finished).
    assert status["building"] == {"generation": 1, "algorithm": "hnsw"} or (
        status["algorithm"] == "hnsw"
    )

    def switched() -> bool:
        served(grower, 0)  # ordinary calls take the rebuild's next step
        return grower.index_status()["building"] is None

    wait_for(switched)
    status = grower.index_status()
    assert (status["algorithm"], status["generation"]) == ("hnsw", 1)
    assert sum(status["entries"]) == n
    names = index_names(grower)
    assert not (old & names), "the FLAT index was not dropped"
    assert all(name.endswith(":idx:g1") for name in names if grower.config.namespace in name)
    # The other engine has not refreshed since: its next search finds its index gone,
    # re-reads the meta and searches the HNSW one. Every entry is found by both.
    monkeypatch.setattr(index_choice, "REFRESH_SECONDS", 3600.0)
    other._cache.state.index_sizes.checked_at = time.monotonic()
    assert [served(other, j) for j in range(n)] == list(range(n))
    assert other.layout.active.algorithm == "hnsw"
    assert [served(grower, j) for j in range(n)] == list(range(n))
    # Writes after the switch land in the new index.
    extra = unit(rng.standard_normal((1, DIMS)))
    table.vectors["e_new"] = extra[0]
    table.vectors["q_new"] = near(rng, extra, 0.98, 0.99)[0]
    assert grower.store(grower.request("prompt new", question="e_new"), b"new")
    found = other.lookup(other.request("prompt q new", question="q_new"))
    assert found.hit and found.value == b"new"


def test_manual_rebuild_keeps_every_entry(make_engine: Callable[..., CacheEngine]) -> None:
    """``rebuild_index`` (``semcache reindex``): FLAT -> HNSW -> FLAT, entries kept."""
    n = 30
    rng = np.random.default_rng(3)
    entries = unit(rng.standard_normal((n, DIMS)))
    table = Table(entries, near(rng, entries, 0.96, 0.99))
    engine = make_engine(embedder=table.embedder(), verifier=accept, dims=DIMS)
    store_all(engine, n)
    assert engine.rebuild_index("hnsw")["algorithm"] == "hnsw"
    assert [served(engine, j) for j in range(n)] == list(range(n))
    status = engine.rebuild_index("flat")
    assert (status["algorithm"], status["generation"], sum(status["entries"])) == ("flat", 2, n)
    assert [served(engine, j) for j in range(n)] == list(range(n))
    assert engine.drop_index() == n
    assert not {name for name in index_names(engine) if engine.config.namespace in name}


def test_a_step_from_an_old_meta_read_leaves_no_orphan_index(
    make_engine: Callable[..., CacheEngine],
) -> None:
    """A process that read the meta while generation 1 was being built, and takes the
    promote step only after another process promoted generation 1 and then retired it
    for generation 2 (`semcache reindex`): its idempotent create makes generation 1
    again, and it must drop it, or every later write is indexed twice for good."""
    import json

    from semcache_core._sync import index as sync_index

    n = 12
    rng = np.random.default_rng(4)
    entries = unit(rng.standard_normal((n, DIMS)))
    table = Table(entries, near(rng, entries, 0.96, 0.99))
    engine = make_engine(embedder=table.embedder(), verifier=accept, dims=DIMS)
    store_all(engine, n)
    state, store = engine._cache.state, engine._store
    raw = store.read_meta()
    assert sync_index.start_rebuild(state, store, raw, json.loads(raw), "hnsw")
    stale_raw = store.read_meta()  # what the slow process read: generation 1 building
    stale = json.loads(stale_raw)
    wait_for(lambda: sync_index._advance(state, store, stale_raw, stale, (1, "hnsw")))
    assert engine.rebuild_index("flat")["generation"] == 2  # generation 1 retired
    namespace = engine.config.namespace
    assert not any(name.endswith(":g1") for name in index_names(engine) if namespace in name)
    # The slow process takes its step now.
    assert sync_index._advance(state, store, stale_raw, stale, (1, "hnsw"))
    ours = {name for name in index_names(engine) if namespace in name}
    assert ours and all(name.endswith(":g2") for name in ours), ours
    assert json.loads(store.read_meta())["index"]["generation"] == 2
    assert [served(engine, j) for j in range(n)] == list(range(n))


@pytest.mark.parametrize(
    "settings",
    [
        {"algorithm": "flat"},
        {"algorithm": "hnsw"},  # a partition this small: ADHOC_BF, exact
        {"algorithm": "hnsw", "hybrid_policy": "batches"},  # the graph walk, EF_RUNTIME grown
    ],
    ids=["flat", "hnsw-auto", "hnsw-batches"],
)
def test_the_nearest_in_scope_entry_is_found(
    make_engine: Callable[..., CacheEngine], settings: dict[str, Any]
) -> None:
    """Random unit vectors (no clusters for the graph to follow), a second tenant's
    entries in the same index, near-duplicate queries at cosine 0.90-0.95: the served
    entry is the brute-force nearest of the tenant's own for >= 99 % of queries."""
    n, q = 600, 150
    rng = np.random.default_rng(4)
    entries = unit(rng.standard_normal((n, 64)))
    mine = np.arange(0, n, 2)
    twins = rng.choice(mine, q, replace=False)
    queries = near(rng, entries[twins], 0.90, 0.95)
    table = Table(entries, queries)
    engine = make_engine(
        embedder=table.embedder(), verifier=accept, dims=64, threshold=0.8, **settings
    )
    for i in range(n):
        tenant = "mine" if i % 2 == 0 else "theirs"
        request = engine.request(f"prompt e{i}", question=f"e{i}", tenant=tenant)
        assert engine.store(request, f"{i}".encode())
    nearest = mine[np.argmax(queries @ entries[mine].T, axis=1)]
    found = 0
    for j in range(q):
        result = engine.lookup(engine.request(f"prompt q{j}", question=f"q{j}", tenant="mine"))
        assert result.outcome is not Outcome.ERROR
        found += result.hit and int(result.value) == nearest[j]
    assert found >= 0.99 * q, f"nearest found for {found}/{q} queries"
