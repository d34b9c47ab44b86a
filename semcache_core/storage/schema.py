"""The index schema, the meta key's document and the checks an existing index must pass.

Pure: no I/O. The store reads what Redis holds and these functions decide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..config import CacheConfig
from ..errors import SchemaMismatchError
from .layout import Layout

SCHEMA_VERSION = 1
META_MIGRATION = (
    "drop the old index with `CacheEngine(..., validate=False).drop_index()` (its entries "
    "are removed and the cache refills), or use a new namespace"
)


def index_schema_dict(
    config: CacheConfig,
    dims: int,
    layout: Layout,
    bucket: int = 0,
    algorithm: str | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    """The RedisVL schema of one bucket's index (the namespace's index on one node), of
    the active generation and algorithm unless given."""
    algorithm = algorithm or layout.active.algorithm
    vector_attrs: dict[str, Any] = {
        "dims": dims,
        "algorithm": algorithm,
        "distance_metric": "cosine",
        "datatype": config.datatype,
    }
    if algorithm == "hnsw":
        vector_attrs.update(
            m=config.hnsw_m,
            ef_construction=config.hnsw_ef_construction,
            ef_runtime=config.hnsw_ef_runtime,
        )
    tag = {"case_sensitive": True}
    return {
        "index": {
            "name": layout.index_of(bucket, generation),
            "prefix": layout.bucket_prefix(bucket),
            "storage_type": "hash",
            "key_separator": ":",
        },
        "fields": [
            {"name": "tenant", "type": "tag", "attrs": tag},
            {"name": "scope", "type": "tag", "attrs": tag},
            {"name": "partition", "type": "tag", "attrs": tag},
            {"name": "tags", "type": "tag", "attrs": {**tag, "separator": ","}},
            {"name": "created_at", "type": "numeric"},
            {"name": "expires_at", "type": "numeric"},
            {"name": "vector", "type": "vector", "attrs": vector_attrs},
        ],
    }


def meta_document(
    config: CacheConfig, dims: int, layout: Layout, model: str | None = None
) -> dict[str, Any]:
    """What the meta key records about an index, checked by every later process. A
    cluster layout adds its bucket count (a single-node meta has none: the layout of
    every earlier release). ``model``: the embedding model that wrote the vectors
    (`embedding.vector_model`), when the embedder names one."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "dims": dims,
        "algorithm": config.algorithm,
        "datatype": config.datatype,
        "distance_metric": "cosine",
    }
    if model is not None:
        document["model"] = model
    if layout.tagged:
        document["layout"] = "cluster"
        document["buckets"] = layout.buckets
    document["index"] = {"generation": 0, "algorithm": first_algorithm(config.algorithm)}
    return document


def first_algorithm(configured: str) -> str:
    """The algorithm of a new namespace's first index: ``auto`` starts FLAT (exact, and
    the fastest while small) and moves to HNSW as the namespace grows."""
    return "flat" if configured == "auto" else configured


def active_index(meta: Mapping[str, Any]) -> tuple[int, str]:
    """``(generation, algorithm)`` lookups use. A meta without ``index`` (every release
    before index generations) has generation 0 of its recorded algorithm."""
    index = meta.get("index")
    if isinstance(index, dict):
        return int(index.get("generation", 0)), str(index.get("algorithm", "hnsw"))
    return 0, str(meta.get("algorithm", "hnsw"))


def building_index(meta: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(generation, algorithm)`` of the index being built beside the active one."""
    building = meta.get("building")
    if isinstance(building, dict):
        return int(building["generation"]), str(building["algorithm"])
    return None


def algorithm_matches(configured: str, found: Mapping[str, Any]) -> bool:
    """``auto`` follows whatever the namespace uses; an explicit algorithm must be the
    recorded one, or the active one of an ``auto`` namespace."""
    if configured == "auto":
        return True
    recorded = found.get("algorithm")
    return recorded == configured or (recorded == "auto" and active_index(found)[1] == configured)


LAYOUT_MIGRATION = (
    "move the namespace with `semcache export` from where it was made and `semcache "
    "import` into this Redis (entries are re-keyed for the target's layout), or use a new "
    "namespace"
)


def check_layout(layout: Layout, found: dict[str, Any]) -> None:
    """The namespace's stored layout must be the one this engine uses."""
    found_layout = found.get("layout", "single")
    if found_layout != ("cluster" if layout.tagged else "single"):
        raise SchemaMismatchError(
            f"namespace {layout.namespace!r} was made with the {found_layout} layout, and "
            f"this engine talks to a {'cluster' if layout.tagged else 'single node'} "
            f"(set cluster={found_layout == 'cluster'} if that is wrong); otherwise "
            f"{LAYOUT_MIGRATION}"
        )
    if layout.tagged and found.get("buckets") != layout.buckets:
        raise SchemaMismatchError(
            f"namespace {layout.namespace!r} was made with cluster_buckets="
            f"{found.get('buckets')!r}, this engine uses {layout.buckets}: set "
            f"cluster_buckets={found.get('buckets')!r} to use it"
        )


def check_meta(layout: Layout, found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise `SchemaMismatchError` when an existing index differs from what we need."""
    check_layout(layout, found)
    if found.get("schema_version") != expected["schema_version"]:
        raise SchemaMismatchError(
            f"index {layout.index_name!r} has schema version {found.get('schema_version')!r}, "
            f"this semcache needs version {expected['schema_version']}: {META_MIGRATION}"
        )
    for field in ("dims", "algorithm", "datatype", "distance_metric"):
        if field == "algorithm" and algorithm_matches(expected[field], found):
            continue
        if found.get(field) != expected[field]:
            hint = (
                "your embedder produces a different vector size than the one the index was "
                "built for (did the embedding model change?)"
                if field == "dims"
                else f"set {field}={found.get(field)!r} to use the existing index"
            )
            raise SchemaMismatchError(
                f"index {layout.index_name!r} was built with {field}={found.get(field)!r} but "
                f"this engine uses {field}={expected[field]!r}; {hint}. Otherwise "
                f"{META_MIGRATION}"
            )
    found_model, model = found.get("model"), expected.get("model")
    if found_model is not None and model is not None and found_model != model:
        # Cosine similarity between two models' vectors means nothing, even at one size:
        # every semantic hit would be a guess.
        raise SchemaMismatchError(
            f"index {layout.index_name!r} holds vectors of the embedding model "
            f"{found_model!r}, but this engine embeds with {model!r}: two models' vectors "
            "cannot be compared. Use a new namespace for the new model, or "
            f"{META_MIGRATION.split(', or ')[0]}"
        )


def parse_meta(raw: Any, layout: Layout) -> dict[str, Any]:
    try:
        found = json.loads(raw)
        if not isinstance(found, dict):
            raise ValueError("not an object")
        return found
    except ValueError as exc:
        raise SchemaMismatchError(
            f"the meta key {layout.meta_key!r} is unreadable ({exc}): {META_MIGRATION}"
        ) from exc


def check_index_info(layout: Layout, info: Any, meta: dict[str, Any] | None) -> None:
    """An index exists: it must be ours (meta key present) and its prefix must match."""
    if meta is None:
        raise SchemaMismatchError(
            f"an index named {layout.index_name!r} exists but was not created by this "
            f"version of semcache (no {layout.meta_key!r} key): {META_MIGRATION}"
        )


NO_SEARCH_MODULE = (
    "the Redis at {url} has no search module (RediSearch / Redis Query Engine), which "
    "semcache needs for its vector index. Use Redis 8 with the Query Engine (the "
    "official redis:8 images), Redis Stack, Redis Cloud or Redis Software; locally: "
    'pip install "semcache[embedded]" and '
    "semcache_core.start_embedded_redis() (or `semcache redis`)"
)


def module_names(reply: Any) -> set[str]:
    names = set()
    for module in reply or []:
        if isinstance(module, dict):
            name = module.get(b"name", module.get("name"))
        else:
            pairs = dict(zip(module[::2], module[1::2], strict=False))
            name = pairs.get(b"name", pairs.get("name"))
        if name is not None:
            names.add((name.decode() if isinstance(name, bytes) else str(name)).lower())
    return names
