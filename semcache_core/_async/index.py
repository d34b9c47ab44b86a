"""Index setup, async, written once: check the search module, check or create the
namespace's index (every bucket's on a cluster), and make it again when Redis lost it.
`_sync/index.py` is generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import redacted_url
from ..deadline import suspended
from ..errors import ConfigurationError
from ..state import EngineState
from ..storage.schema import (
    NO_SEARCH_MODULE,
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
    # One-time work (the first call, or Redis came back empty), many round trips on a
    # cluster's buckets: not under the call's deadline, each command its socket_timeout.
    with suspended():
        await _setup(state, store)


async def _setup(state: EngineState, store: AsyncStore) -> None:
    if not await store.has_search_module():
        raise ConfigurationError(NO_SEARCH_MODULE.format(url=redacted_url(state.config.redis_url)))
    # The index first: its meta is written before it is created, so an index seen
    # here has its meta by the time we read it (processes may be creating it now).
    info = await store.index_info()
    meta_raw = await store.read_meta()
    meta = parse_meta(meta_raw, state.layout) if meta_raw is not None else None
    if info is not None:
        check_index_info(state.layout, info, meta)
    if meta is not None:
        check_layout(state.layout, meta)
    if meta is not None and state.dims is None and state.config.dims is None:
        state.dims = meta.get("dims")
    dims = state.known_dims()
    if meta is not None and dims is not None:
        check_meta(state.layout, meta, meta_document(state.config, dims, state.layout))
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
    await store.write_meta_if_absent(meta_document(state.config, dims, layout))
    # Another process may have won the race with other settings: check what it wrote.
    meta = parse_meta(await store.read_meta(), layout)
    check_meta(layout, meta, meta_document(state.config, dims, layout))
    schemas = [index_schema_dict(state.config, dims, layout, b) for b in layout.all_buckets]
    await store.create_index(schemas)


async def learn_dims(
    state: EngineState, store: AsyncStore, vector: list[float], create: bool
) -> None:
    """An engine whose dims were unknown learns them from its first vector: from an
    index another process made meanwhile, or (``create``: a store) by creating it.
    Concurrent first calls may all create: creation is idempotent. Once per engine:
    not under the call's deadline."""
    with suspended():
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
