"""Pure decisions of the index choice: the query plan, when to rebuild, what an
existing meta key means (issue 14). No Redis: the integration twin is
tests/integration/test_index_choice.py."""

from __future__ import annotations

import pytest

from semcache_core.config import CacheConfig
from semcache_core.errors import SchemaMismatchError
from semcache_core.storage.index_choice import (
    ADHOC_MAX,
    ADHOC_MAX_LARGE_EF,
    EF_MAX,
    base_ef,
    query_plan,
    wants_hnsw,
)
from semcache_core.storage.layout import Layout
from semcache_core.storage.schema import active_index, check_meta, meta_document


def config(**kw: object) -> CacheConfig:
    return CacheConfig(redis_url="redis://x:1/0", **kw)  # type: ignore[arg-type]


def test_flat_is_exact_and_gets_no_ef_runtime() -> None:
    assert query_plan(config(), "flat", 10**6, 10**6, 3) == (None, None)
    assert query_plan(config(hybrid_policy="batches"), "flat", 10, 10, 3) == ("batches", None)


def test_hnsw_small_partition_is_searched_exactly() -> None:
    assert query_plan(config(), "hnsw", 10**6, ADHOC_MAX, 3) == ("adhoc_bf", None)


def test_hnsw_ef_runtime_grows_with_size_and_shrinking_share() -> None:
    cfg = config()
    small = query_plan(cfg, "hnsw", 10_000, 10_000, 3)
    large = query_plan(cfg, "hnsw", 100_000, 100_000, 3)
    half = query_plan(cfg, "hnsw", 100_000, 50_000, 3)
    assert small == ("batches", base_ef(10_000))
    assert large == ("batches", base_ef(100_000))
    assert half[0] == "batches" and half[1] == 2 * base_ef(100_000)
    assert base_ef(10_000) < base_ef(100_000) < base_ef(1_000_000)
    # A partition too small a share to walk the graph for: brute force over it.
    assert query_plan(cfg, "hnsw", 10**6, 5_000, 3) == ("adhoc_bf", None)
    assert query_plan(cfg, "hnsw", 10**6, ADHOC_MAX_LARGE_EF, 3) == ("adhoc_bf", None)
    # ... but not a large one, whose brute force would cost more than the walk.
    plan = query_plan(cfg, "hnsw", 10**6, 400_000, 3)
    assert plan[0] == "batches" and plan[1] is not None and plan[1] > EF_MAX
    # Past the measured sizes the walk widens, never into brute force over the index.
    assert base_ef(1_000_000) < base_ef(4_000_000) == EF_MAX
    assert query_plan(cfg, "hnsw", 4_000_000, 4_000_000, 3) == ("batches", EF_MAX)
    # hnsw_ef_runtime is a floor; a pinned policy is kept.
    assert query_plan(config(hnsw_ef_runtime=900), "hnsw", 10_000, 10_000, 3)[1] == 900
    assert query_plan(config(hybrid_policy="batches"), "hnsw", 10**6, 10, 3)[0] == "batches"
    assert query_plan(config(hybrid_policy="adhoc_bf"), "hnsw", 10**6, 10**6, 3) == (
        "adhoc_bf",
        None,
    )


def test_rebuild_only_for_auto_flat_past_the_limit() -> None:
    layout = Layout("semcache", "ns")
    meta = meta_document(config(), 8, layout)
    assert active_index(meta) == (0, "flat")
    cfg = config(flat_max_entries=100)
    assert not wants_hnsw(cfg, meta, {0: 100})
    assert wants_hnsw(cfg, meta, {0: 101})
    assert wants_hnsw(cfg, meta, {0: 3, 1: 101})  # any bucket
    assert not wants_hnsw(config(algorithm="flat", flat_max_entries=100), meta, {0: 101})
    building = {**meta, "building": {"generation": 1, "algorithm": "hnsw"}}
    assert not wants_hnsw(cfg, building, {0: 101})
    pinned = meta_document(config(algorithm="flat"), 8, layout)
    assert not wants_hnsw(cfg, pinned, {0: 101})  # made pinned to FLAT by someone


def test_meta_of_earlier_releases_and_pinned_algorithms() -> None:
    layout = Layout("semcache", "ns")
    old = {"schema_version": 1, "dims": 8, "algorithm": "hnsw", "datatype": "float32"}
    old["distance_metric"] = "cosine"
    assert active_index(old) == (0, "hnsw")  # names and algorithm of every earlier release
    check_meta(layout, old, meta_document(config(), 8, layout))  # auto follows it
    check_meta(layout, old, meta_document(config(algorithm="hnsw"), 8, layout))
    with pytest.raises(SchemaMismatchError, match="algorithm"):
        check_meta(layout, old, meta_document(config(algorithm="flat"), 8, layout))
    auto = meta_document(config(), 8, layout)
    check_meta(layout, auto, meta_document(config(algorithm="flat"), 8, layout))  # active
    with pytest.raises(SchemaMismatchError, match="algorithm"):
        check_meta(layout, auto, meta_document(config(algorithm="hnsw"), 8, layout))


def test_generation_names_keep_the_bucket_hash_tag() -> None:
    single = Layout("semcache", "ns")
    assert single.index_of(0) == "semcache:ns:idx"
    assert single.index_of(0, 2) == "semcache:ns:idx:g2"
    tagged = Layout("semcache", "ns", 4, tagged=True)
    assert tagged.index_of(3, 1) == "semcache:ns:{ns.b3}:idx:g1"
    tagged.active.generation = 5
    assert tagged.index_name == "semcache:ns:{ns.b0}:idx:g5"
