"""Index setup, async, written once: check the search module, check or create the
namespace's index (every bucket's on a cluster), make it again when Redis lost it, and
rebuild it (FLAT -> HNSW) as the namespace grows. `_sync/index.py` is generated from
this file by ``scripts/unasync.py``.

A rebuild, on one node and on a cluster alike, is a few steps any process may take
(each a compare-and-set of the meta key, so one process wins each), driven by ordinary
calls at most every `index_choice.REFRESH_SECONDS` (`maintain`): no thread, no lock.

1. *Start*: the meta gains ``building`` (generation g+1, HNSW); every bucket's g+1
   index is created over the same key prefix. Redis indexes the existing entries in the
   background, and every later write goes into both generations.
2. *Promote*: once every g+1 index has finished its scan, ``index`` becomes g+1.
   Lookups of this process switch at once, others at their next refresh, or at their
   next search of g, which answers "no such index" and re-reads the meta.
3. *Retire*: the g indexes are dropped (entries kept).

A process that dies between steps leaves the meta saying where the rebuild stands, and
the next process to refresh takes the next step (creating an index is idempotent).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import deadline
from ..concurrency import async_sleep
from ..config import redacted_url
from ..embedding import vector_model
from ..errors import ConfigurationError, IndexMissingError
from ..state import EngineState
from ..storage._async import reads
from ..storage.commands import index_progress
from ..storage.index_choice import query_plan, wants_hnsw
from ..storage.layout import Layout
from ..storage.schema import (
    NO_SEARCH_MODULE,
    active_index,
    building_index,
    check_index_info,
    check_layout,
    check_meta,
    index_schema_dict,
    meta_document,
    parse_meta,
)

if TYPE_CHECKING:
    from ..storage._async.store import AsyncStore


async def setup(state: EngineState, store: AsyncStore) -> None:
    """Check the search module, and check or create the index.

    The embedder is never called here: the index is created now when its dims are
    known (configured, the embedder's own ``dims``, or an existing index's meta), else
    by the first store, from the first vector.

    Raises:
        ConfigurationError: no search module in this Redis.
        SchemaMismatchError: the existing index differs from this configuration.
        BackendUnavailableError: Redis is unreachable.
    """
    if state.ready:
        return
    with deadline.unbounded():  # once per index: not a user call's wait
        await _setup(state, store)


async def _setup(state: EngineState, store: AsyncStore) -> None:
    if not await store.has_search_module():
        raise ConfigurationError(NO_SEARCH_MODULE.format(url=redacted_url(state.config.redis_url)))
    # The meta first: it names the active index generation. Its meta is written before
    # an index is created, so an index seen without a meta read before it had one by
    # the time we read it again (processes may be creating it now).
    meta_raw = await store.read_meta()
    meta = parse_meta(meta_raw, state.layout) if meta_raw is not None else None
    if meta is not None:
        follow(state, meta)
    info = await store.index_info()
    if info is not None and meta is None:
        meta_raw = await store.read_meta()
        meta = parse_meta(meta_raw, state.layout) if meta_raw is not None else None
        if meta is not None:
            follow(state, meta)
            info = await store.index_info()
    if info is not None:
        check_index_info(state.layout, info, meta)
    if meta is not None:
        check_layout(state.layout, meta)
    if meta is not None and state.dims is None and state.config.dims is None:
        state.dims = meta.get("dims")
    dims = state.known_dims()
    if meta is not None and dims is not None:
        check_meta(state.layout, meta, _meta_document(state, dims))
    if info is None and dims is not None:
        await create_index(state, store, dims)
    state.ready = info is not None or dims is not None


async def ensure_index(state: EngineState, store: AsyncStore) -> None:
    """`setup`, and make the index again (exact-only engines too) when its meta key is
    gone (one EXISTS): Redis came back empty (FLUSHALL, a restart without data) or
    another process dropped it. Raises what `setup` raises."""
    if state.ready and not await store.has_meta():
        state.ready = False
    await setup(state, store)


async def create_index(state: EngineState, store: AsyncStore, dims: int) -> None:
    layout = state.layout
    await store.write_meta_if_absent(_meta_document(state, dims))
    # Another process may have won the race with other settings: check what it wrote,
    # and create the generation it names (a rebuild may have moved on meanwhile).
    meta = parse_meta(await store.read_meta(), layout)
    check_meta(layout, meta, _meta_document(state, dims))
    follow(state, meta)
    await create_generation(state, store, dims, *active_index(meta))


def _meta_document(state: EngineState, dims: int) -> dict[str, Any]:
    return meta_document(state.config, dims, state.layout, vector_model(state.embedder))


async def create_generation(
    state: EngineState, store: AsyncStore, dims: int, generation: int, algorithm: str
) -> None:
    layout = state.layout
    schemas = [
        index_schema_dict(state.config, dims, layout, b, algorithm, generation)
        for b in layout.all_buckets
    ]
    await store.create_index(schemas)


def follow(state: EngineState, meta: dict[str, Any]) -> None:
    """Point the layout (every store shares it) at the generation the meta names."""
    generation, algorithm = active_index(meta)
    active = state.layout.active
    if (active.generation, active.algorithm) != (generation, algorithm):
        active.generation, active.algorithm = generation, algorithm
        state.index_sizes.forget()


async def search(
    state: EngineState, store: AsyncStore, partition: str, vector: bytes
) -> list[tuple[str, dict[str, Any]]]:
    """A lookup's KNN query, planned by `index_choice.query_plan` from the sizes last
    read. An index gone under it (Redis emptied, or a rebuild elsewhere retired it) is
    set up again from the meta and searched once more."""
    k = state.config.search_candidates
    await maintain(state, store)
    for attempt in (1, 2):
        try:
            plan = await _plan(state, store, partition, k)
            return await store.search(partition, vector, k, plan)
        except IndexMissingError:
            state.ready = False
            await setup(state, store)
            if attempt == 2 or not state.ready:
                return []
    return []


async def search_read(
    state: EngineState,
    store: AsyncStore,
    key: str,
    partition: str,
    vector: bytes,
    *,
    exact: bool,
    min_similarity: float,
) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any] | None, Any]]]:
    """`search` and (``exact``) the read of entry ``key`` in one round trip
    (`storage.read_script`). An index gone under it raises `IndexMissingError`: the
    caller reads again the usual way, which sets it up again."""
    k = state.config.search_candidates
    await maintain(state, store)
    plan = await _plan(state, store, partition, k)
    return await reads.read_or_search(
        store, key, partition, vector, k, plan, exact=exact, min_similarity=min_similarity
    )


async def _plan(
    state: EngineState, store: AsyncStore, partition: str, k: int
) -> tuple[str | None, int | None]:
    layout = state.layout
    if layout.active.algorithm != "hnsw":
        return query_plan(state.config, layout.active.algorithm, None, None, k)
    sizes = state.index_sizes
    entries = sizes.partition(partition)
    if entries is None:
        entries = await store.count_partition(partition)
        sizes.set_partition(partition, entries)
    bucket = sizes.bucket(layout.bucket_of(partition))
    return query_plan(state.config, "hnsw", bucket, entries, k)


async def maintain(state: EngineState, store: AsyncStore, *, force: bool = False) -> None:
    """At most every `index_choice.REFRESH_SECONDS` (``force``: now): follow a rebuild
    made elsewhere, read the index sizes, and take the next rebuild step that is due.
    Faults are counted, never raised: a lookup or store does not fail for this."""
    if not state.ready or state.dims is None:
        return
    if not (force or state.index_sizes.due(time.monotonic())):
        return
    try:
        await _maintain(state, store)
    except Exception as exc:  # a fault, a meta another process broke: never the call's
        state.fault("index", None, exc, breaker=False)


async def _maintain(state: EngineState, store: AsyncStore) -> None:
    raw = await store.read_meta()
    if raw is None:
        return
    layout = state.layout
    meta = parse_meta(raw, layout)
    follow(state, meta)
    infos = await store.generation_infos(layout.active.generation)
    state.index_sizes.entries = {
        b: index_progress(info)[0] for b, info in enumerate(infos) if info is not None
    }
    building = building_index(meta)
    if building is None:
        if wants_hnsw(state.config, meta, state.index_sizes.entries):
            await start_rebuild(state, store, raw, meta, "hnsw")
        return
    await _advance(state, store, raw, meta, building)


async def start_rebuild(
    state: EngineState, store: AsyncStore, raw: Any, meta: dict[str, Any], algorithm: str
) -> bool:
    """Step 1: record the next generation in the meta (compare-and-set) and create its
    indexes. Returns whether this process started it."""
    generation = active_index(meta)[0] + 1
    document = {**meta, "building": {"generation": generation, "algorithm": algorithm}}
    if not await store.replace_meta(raw, document):
        return False
    await create_generation(state, store, int(meta["dims"]), generation, algorithm)
    return True


async def _advance(
    state: EngineState,
    store: AsyncStore,
    raw: Any,
    meta: dict[str, Any],
    building: tuple[int, str],
) -> bool:
    """Steps 2 and 3, once the new generation has indexed every bucket's entries.
    Returns whether the rebuild is complete (by this process or another)."""
    generation, algorithm = building
    # Idempotent: covers a starter that died before creating every bucket's index.
    await create_generation(state, store, int(meta["dims"]), generation, algorithm)
    if await _drop_if_retired(store, generation):
        return True  # our meta read was old: another process finished, and moved past it
    infos = await store.generation_infos(generation)
    if not all(info is not None and index_progress(info)[1] for info in infos):
        return False
    old = active_index(meta)[0]
    document = {k: v for k, v in meta.items() if k != "building"}
    document["index"] = {"generation": generation, "algorithm": algorithm}
    if await store.replace_meta(raw, document):
        follow(state, document)
        await store.drop_generation(old)
    else:
        await _drop_if_retired(store, generation)
    return True


async def _drop_if_retired(store: AsyncStore, generation: int) -> bool:
    """Another process moved the meta on while this one worked from an older read. If
    it has promoted past ``generation`` and retired it, the idempotent create above has
    just made that generation again: an orphan every write would keep indexing. Drop it
    (generations only grow, so one the meta names neither active nor building is past)."""
    now_raw = await store.read_meta()
    if now_raw is None:
        return False
    now = parse_meta(now_raw, store.layout)
    if generation in (active_index(now)[0], (building_index(now) or (-1, ""))[0]):
        return False
    await store.drop_generation(generation)
    return True


async def rebuild(
    state: EngineState, store: AsyncStore, algorithm: str, *, wait: float = 600.0
) -> dict[str, Any]:
    """Rebuild the namespace's index as ``algorithm`` beside the active one, swap and
    drop the old one (`semcache reindex`); waits up to ``wait`` seconds for Redis to
    index the entries (0: start it and return; refreshes finish it). Returns the
    `index_status` after."""
    await ensure_index(state, store)
    raw = await store.read_meta()
    if raw is None:
        raise ConfigurationError("no index yet: nothing to rebuild (store an entry first)")
    meta = parse_meta(raw, state.layout)
    if building_index(meta) is None and active_index(meta)[1] != algorithm:
        await start_rebuild(state, store, raw, meta, algorithm)
    deadline = time.monotonic() + wait
    while True:
        raw = await store.read_meta()
        meta = parse_meta(raw, state.layout)
        follow(state, meta)
        building = building_index(meta)
        if building is None or await _advance(state, store, raw, meta, building):
            break
        if time.monotonic() >= deadline:
            break
        await async_sleep(0.2)
    return await index_status(state, store)


async def generations_in_use(state: EngineState, store: AsyncStore) -> list[int]:
    """Every index generation the meta names (active, and one being built)."""
    raw = await store.read_meta()
    if raw is None:
        return []
    meta = parse_meta(raw, state.layout)
    building = building_index(meta)
    return [active_index(meta)[0]] + ([building[0]] if building else [])


async def index_status(state: EngineState, store: AsyncStore) -> dict[str, Any]:
    """The active generation and algorithm, one being built, and entries per bucket."""
    raw = await store.read_meta()
    if raw is None:
        return {"generation": None, "algorithm": None, "building": None, "entries": []}
    meta = parse_meta(raw, state.layout)
    follow(state, meta)
    generation, algorithm = active_index(meta)
    infos = await store.generation_infos(generation)
    entries = [index_progress(info)[0] if info is not None else None for info in infos]
    building = building_index(meta)
    return {
        "generation": generation,
        "algorithm": algorithm,
        "building": None
        if building is None
        else {"generation": building[0], "algorithm": building[1]},
        "entries": entries,
        "layout": _layout_name(state.layout),
    }


def _layout_name(layout: Layout) -> str:
    return f"cluster, {layout.buckets} buckets" if layout.tagged else "single node"


async def learn_dims(
    state: EngineState, store: AsyncStore, vector: list[float], create: bool
) -> None:
    """An engine whose dims were unknown learns them from its first vector: from an
    index another process made meanwhile, or (``create``: a store) by creating it.
    Concurrent first calls may all create: creation is idempotent."""
    with deadline.unbounded():  # once per engine: not a user call's wait
        await _learn_dims(state, store, vector, create)


async def _learn_dims(
    state: EngineState, store: AsyncStore, vector: list[float], create: bool
) -> None:
    meta_raw = await store.read_meta()
    if meta_raw is not None and await store.index_info() is not None:
        meta = parse_meta(meta_raw, state.layout)
        state.dims = meta.get("dims")
    elif create:
        await create_index(state, store, len(vector))
        state.dims = len(vector)
