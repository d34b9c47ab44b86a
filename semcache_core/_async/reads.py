"""A lookup's reads, async, written once: the exact entry (L1, then Redis) and the
semantic candidates, handed to the pure decisions of `semcache_core.core.read`.
`_sync/reads.py` is generated from this file by ``scripts/unasync.py``.

When semantic lookup is on and the question's vector costs less than a round trip
(`embedding.CachedEmbedder.at_hand`: in the LRU, or a fast embedder), the exact read
and the KNN search go to Redis as one script call (`storage.read_script`): the search
runs only when there is no exact entry, so an exact hit still costs one read. Otherwise
(a model or remote embedder not yet asked) the exact entry is read first, and the
question is embedded only if it is not there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..core import read
from ..core.rules import Outcome
from ..errors import BackendRefusedError, IndexMissingError
from ..request import CacheRequest
from ..state import Decoder
from ..tenant_policy import TenantPolicy
from . import index

if TYPE_CHECKING:
    from ..l1 import LocalTier
    from ..storage._async.store import AsyncStore
    from .cache import AsyncCache

SCRIPT_RETRY_SECONDS = 300.0


def _scripts_on(cache: AsyncCache) -> bool:
    return cache.script_off_until <= 0.0 or time.monotonic() >= cache.script_off_until


Hits = list[tuple[str, "dict[str, Any] | None", Any]]


async def lookup_read(
    cache: AsyncCache,
    store: AsyncStore,
    request: CacheRequest,
    pol: TenantPolicy,
    decode: Decoder,
    stale: bool,
) -> read.ReadDecision:
    """The decision of one lookup pass from what it reads."""
    state = cache.state
    vector: bytes | None = None
    hits: Hits | None = None
    if pol.exact:
        key = state.key(request)
        tier = None if stale else state.l1_tier()
        found = await _held(cache, store, request, key, tier, decode, stale)
        if found is None:
            since = tier.version if tier is not None else 0  # before the read
            vector = await cache.embed(request, pol, at_hand=True)
            fields, hits = await _read_exact(cache, store, request, pol, key, vector)
            if fields is not None:
                hits = None  # the script stopped at the entry: search if it does not serve
                found = await cache.accept(store, request, key, fields, decode, stale)
                if found is not None and tier is not None:
                    state.l1_put(tier, key, fields, found, since, decode)
        if found is not None:
            return read.exact_hit(
                found, stale=stale, sliding=state.config.sliding_ttl, now=state.clock()
            )
    return await _read_semantic(cache, store, request, pol, decode, stale, vector, hits)


async def _held(
    cache: AsyncCache,
    store: AsyncStore,
    request: CacheRequest,
    key: str,
    tier: LocalTier | None,
    decode: Decoder,
    stale: bool,
) -> read.Found | None:
    """The entry from this process's L1 copy, if it holds one that serves."""
    held = tier.held(key) if tier is not None else None
    if tier is None or held is None:
        return None
    state = cache.state
    # Decoded before (a shared decoder), else decoded from the copy's fields.
    found = state.l1_reuse(request, held, decode, 0.0)
    if found is None:
        found = await cache.accept(store, request, key, held.fields, decode, stale)
        if found is not None:
            state.l1_keep(held, decode, found)
    if found is None:
        # Expired here, maybe alive in Redis (another process slid its TTL).
        tier.drop(key)
    return found


async def _read_exact(
    cache: AsyncCache,
    store: AsyncStore,
    request: CacheRequest,
    pol: TenantPolicy,
    key: str,
    vector: bytes | None,
) -> tuple[dict[str, Any] | None, Hits | None]:
    """The exact entry's fields, and (``vector`` given) the semantic candidates read in
    the same round trip when there is none (``None``: not searched yet)."""
    if vector is not None and _scripts_on(cache):
        found = await _scripted(cache, store, request, pol, key, vector, exact=True)
        if found is not None:
            return found
    return await store.read(key), None


async def _scripted(
    cache: AsyncCache,
    store: AsyncStore,
    request: CacheRequest,
    pol: TenantPolicy,
    key: str,
    vector: bytes,
    *,
    exact: bool,
) -> tuple[dict[str, Any] | None, Hits] | None:
    """`index.search_read`; ``None`` when the caller must read the usual way: the index
    is gone (the usual way sets it up again), or Redis refused the script (then off for
    this driver for `SCRIPT_RETRY_SECONDS`: an ACL without EVAL, a managed Redis whose
    search module may not run in scripts)."""
    state = cache.state
    low = read.relevant_similarity(state.semantic_policy(pol))
    try:
        return await index.search_read(
            state, store, key, request.partition, vector, exact=exact, min_similarity=low
        )
    except IndexMissingError:
        return None
    except BackendRefusedError as exc:
        cache.script_off_until = time.monotonic() + SCRIPT_RETRY_SECONDS
        state.fault("read_script", request, exc, breaker=False)
        return None


async def _read_semantic(
    cache: AsyncCache,
    store: AsyncStore,
    request: CacheRequest,
    pol: TenantPolicy,
    decode: Decoder,
    stale: bool,
    vector: bytes | None,
    hits: Hits | None,
) -> read.ReadDecision:
    state = cache.state
    if vector is None:
        vector = await cache.embed(request, pol)
        if vector is None:
            return read.ReadDecision(Outcome.MISS)
    if hits is None and _scripts_on(cache):
        key = state.key(request)
        scripted = await _scripted(cache, store, request, pol, key, vector, exact=False)
        hits = scripted[1] if scripted is not None else None
    if hits is None:
        # A lost index is set up again (a miss: nothing to find); a retired one followed.
        searched = await index.search(state, store, request.partition, vector)
        hits = [(key, fields, fields.get("distance")) for key, fields in searched]
    candidates: list[read.Found] = []
    nearest = None
    for key, fields, distance in hits:
        if fields is None:  # farther than any candidate that could matter
            if nearest is None and not candidates:
                nearest = 1.0 - float(distance)
            continue
        found = await cache.accept(store, request, key, fields, decode, stale)
        if found is not None:
            candidates.append(found)
    sem = state.semantic_policy(pol)
    checked = []
    for found, outcome in read.to_verify(sem, candidates):
        check = await cache.verify(request, sem, outcome, found)
        checked.append((found, outcome, check))
        if check.ok:
            break
    return read.semantic(
        sem,
        candidates,
        checked,
        stale=stale,
        audit_draw=state.audit_rng.random(),
        now=state.clock(),
        nearest=nearest,
    )
