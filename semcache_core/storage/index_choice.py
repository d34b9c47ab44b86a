"""How a lookup queries the index, and when the index is rebuilt: pure decisions.

A FLAT index is exact and, while small, the fastest; past ``flat_max_entries`` entries
(of one bucket index) an ``algorithm="auto"`` namespace is rebuilt as HNSW in the
background (`semcache_core._async.index.maintain`). An HNSW lookup that must find the
nearest in-scope entry needs an EF_RUNTIME that grows with the index (its graph is
walked from a far entry point) and with how little of the index the partition holds
(the filter drops the rest of each batch); a partition small enough is searched
exactly (``ADHOC_BF``: brute force over its own entries). `query_plan` chooses per query
from the sizes `IndexSizes` keeps (refreshed every few seconds, not per query).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache

from ..config import CacheConfig
from .schema import active_index, building_index

# A partition this small is searched exactly: brute force over 2,000 vectors of 384
# dims costs about what an HNSW walk with a large EF_RUNTIME does (~0.3 ms).
ADHOC_MAX = 2_000
# Past this EF_RUNTIME the graph walk costs more than brute force over a partition of at
# most `ADHOC_MAX_LARGE_EF` entries (~7 ms over 100k vectors, a walk at EF ~1,000 over
# 1M): such a partition is searched exactly; a larger one keeps the walk.
EF_MAX = 1_000
ADHOC_MAX_LARGE_EF = 100_000
# Seconds between two reads of the index sizes and the meta key (follow a rebuild).
REFRESH_SECONDS = 5.0
# Seconds a partition's entry count is trusted.
PARTITION_TTL = 30.0

# EF_RUNTIME for the nearest entry at >= 99 % of queries over a whole index (partition
# share 1), HNSW M=32 EF_CONSTRUCTION=200 (the defaults), measured with
# benchmarks/hnsw_sweep.py on random unit vectors of 384 dims, each query's twin drawn
# from the whole index (the hardest case: no clusters to walk along; real MiniLM vectors
# need less): 10k: 300/300 at EF 16; 100k: 300/300 at 128; 1M: 293/300 at 256, 300/300 at
# 512. (entries up to, EF_RUNTIME):
EF_BY_SIZE: tuple[tuple[int, int], ...] = (
    (10_000, 64),
    (100_000, 128),
    (1_000_000, 512),
)


def base_ef(entries: int) -> int:
    """`EF_BY_SIZE`'s EF_RUNTIME for an index of ``entries``; past its last size, twice
    the last (not measured), at most `EF_MAX`."""
    for bound, ef in EF_BY_SIZE:
        if entries <= bound:
            return ef
    return min(EF_BY_SIZE[-1][1] * 2, EF_MAX)


def query_plan(
    config: CacheConfig,
    algorithm: str,
    index_entries: int | None,
    partition_entries: int | None,
    k: int,
) -> tuple[str | None, int | None]:
    """``(hybrid policy, EF_RUNTIME)`` of one KNN query (``None``: leave it out).

    FLAT is exact under any policy: the configured one is passed on (``auto``: none).
    HNSW with ``hybrid_policy="auto"``: ``ADHOC_BF`` (exact) for a partition of at most
    `ADHOC_MAX` entries, or of at most `ADHOC_MAX_LARGE_EF` that is too small a share of
    the index to walk the graph for (EF_RUNTIME past `EF_MAX`), else ``BATCHES`` with
    EF_RUNTIME = `base_ef` / share (at least ``hnsw_ef_runtime`` and 2k, at most 4,096).
    Unknown sizes count as the whole index being one partition.
    """
    pinned = None if config.hybrid_policy == "auto" else config.hybrid_policy
    if algorithm != "hnsw":
        return pinned, None
    if pinned == "adhoc_bf":
        return pinned, None
    n = max(1, index_entries or 0)
    part = n if partition_entries is None else max(1, min(partition_entries, n))
    ef = max(config.hnsw_ef_runtime, 2 * k, math.ceil(base_ef(n) * n / part))
    if pinned is None and (part <= ADHOC_MAX or (ef > EF_MAX and part <= ADHOC_MAX_LARGE_EF)):
        return "adhoc_bf", None
    return "batches", min(ef, 4096)


def wants_hnsw(config: CacheConfig, meta: Mapping[str, Any], entries: Mapping[int, int]) -> bool:
    """Whether an ``auto`` namespace's FLAT index has grown past ``flat_max_entries``
    (in any bucket) and no rebuild is under way."""
    if config.algorithm != "auto" or meta.get("algorithm") not in ("auto", None):
        return False
    if active_index(meta)[1] != "flat" or building_index(meta) is not None:
        return False
    return max(entries.values(), default=0) > config.flat_max_entries


class IndexSizes:
    """What one engine last read of its index: entries per bucket, and (for a while)
    per partition. Shared by the sync and async drivers; thread-safe."""

    def __init__(self) -> None:
        self.entries: dict[int, int] = {}
        self.checked_at = -math.inf
        self._partitions: TTLCache[str, int] = TTLCache(maxsize=10_000, ttl=PARTITION_TTL)
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        """Whether a refresh is due; claims it (one caller per interval)."""
        with self._lock:
            if now - self.checked_at < REFRESH_SECONDS:
                return False
            self.checked_at = now
            return True

    def bucket(self, bucket: int) -> int | None:
        return self.entries.get(bucket)

    def partition(self, partition: str) -> int | None:
        with self._lock:
            return self._partitions.get(partition)

    def set_partition(self, partition: str, entries: int) -> None:
        with self._lock:
            self._partitions[partition] = entries

    def forget(self) -> None:
        """Sizes of another index generation are stale: read them again next call."""
        with self._lock:
            self.entries = {}
            self.checked_at = -math.inf
            self._partitions.clear()
