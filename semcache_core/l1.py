"""An optional in-process tier in front of the exact layer, kept coherent over pub/sub.

`LocalTier` holds what an exact-layer HMGET returned (``key -> fields``) for a short
time, so a repeated identical request costs no Redis round trip. It is a bounded LRU or
LFU with a TTL, thread-safe, and knows nothing of Redis.

`semcache_core.storage.l1_subscriber.L1Coherence` keeps every process's tier honest:
a daemon thread subscribed to the namespace's L1 channel applies what writers publish
there (the store's `publish`, inside a write or after an invalidation). While it is not
subscribed the tier is cleared and serves nothing, and it is cleared again once the
subscription is back, because messages published in between were lost.

A read that races an invalidation must not put the old value back after the drop was
applied: take `LocalTier.version` before the Redis read and pass it as ``since=`` to
`LocalTier.put`, which refuses when the key was dropped (or its tenant, or everything)
after that version.

Messages are JSON: ``{"op": "drop", "keys": [...]}``, ``{"op": "drop_prefix",
"prefix": ...}``, ``{"op": "drop_prefixes", "prefixes": [...]}``, ``{"op": "clear"}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import FIFOCache, LFUCache, LRUCache

logger = logging.getLogger("semcache.l1")

Policy = Literal["lru", "lfu"]
_TOMBSTONES = 4096
_PREFIX_TOMBSTONES = 128  # a tenant on a cluster layout: one per bucket (16 by default)


def drop_message(keys: Iterable[str]) -> str:
    """JSON telling every tier to drop these entry keys."""
    return json.dumps({"op": "drop", "keys": list(keys)}, separators=(",", ":"))


def drop_prefix_message(*prefixes: str) -> str:
    """JSON telling every tier to drop every key starting with one of ``prefixes``.

    Several prefixes (a tenant's buckets on a cluster) make one ``drop_prefixes``
    message; a tier of a release without that op clears itself on it (unknown op)."""
    if len(prefixes) == 1:
        return json.dumps({"op": "drop_prefix", "prefix": prefixes[0]}, separators=(",", ":"))
    return json.dumps({"op": "drop_prefixes", "prefixes": list(prefixes)}, separators=(",", ":"))


def clear_message() -> str:
    """JSON telling every tier to drop everything."""
    return '{"op":"clear"}'


@dataclass(frozen=True)
class L1Stats:
    """Counters of one `LocalTier` since it was made.

    Attributes:
        hits: `LocalTier.get` found a live entry.
        misses: it did not (absent, expired, or the tier was suspended).
        evictions: entries pushed out by ``maxsize``.
        expirations: entries found past their TTL.
        dropped: entries removed by `drop`, `drop_prefix`, `clear` or a suspension.
        refused: puts refused because the key was invalidated after the read began.
        size: entries held now.
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    dropped: int
    refused: int
    size: int


class Held:
    """One entry of a tier: the fields as read, when they expire (monotonic seconds;
    ``None``: never), and values decoded from them, by decoder (filled by the engine for
    decoders whose values may be shared, see `semcache_core.core.read.share_decoded`).
    Replacing or refreshing an entry starts a new `Held`: nothing decoded carries over."""

    __slots__ = ("decoded", "expires_at", "fields")

    def __init__(self, fields: dict[str, Any], expires_at: float | None) -> None:
        self.fields = fields
        self.expires_at = expires_at
        self.decoded: dict[Any, Any] = {}


_Entry = Held


class _Tombstones(FIFOCache[str, int]):
    """Invalidated keys (or prefixes) and the sequence of their last invalidation, bounded.

    Forgetting the oldest one raises `floor` to its sequence, so a put whose read began
    before the floor is refused: it may have raced an invalidation no longer remembered.
    cachetools evicts through `popitem`, which is where the floor rises.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.floor = 0

    def mark(self, key: str, seq: int) -> None:
        """Record an invalidation of ``key``; a repeat moves it to the newest end."""
        self.pop(key, None)
        self[key] = seq

    def popitem(self) -> tuple[str, int]:
        key, seq = super().popitem()
        self.floor = max(self.floor, seq)
        return key, seq


class LocalTier:
    """A bounded, thread-safe map ``entry key -> fields`` with per-entry expiry.

    Args:
        maxsize: entries held at most; 0 disables the tier (every get misses).
        ttl: seconds an entry stays at most, whatever TTL `put` is given; ``None``: no cap.
        policy: which entry makes room when full: least recently (``"lru"``) or least
            frequently (``"lfu"``) used.
        timer: monotonic clock, injectable for tests.

    Example:
        >>> tier = LocalTier(1000, ttl=30.0)
        >>> since = tier.version
        >>> fields = store.read(key)              # the exact-layer HMGET
        >>> tier.put(key, fields, ttl=remaining, since=since)
        True
        >>> tier.get(key) == fields
        True
    """

    def __init__(
        self,
        maxsize: int,
        ttl: float | None = None,
        policy: Policy = "lru",
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds or None, got {ttl}")
        if policy not in ("lru", "lfu"):
            raise ValueError(f"policy must be 'lru' or 'lfu', got {policy!r}")
        self.maxsize = maxsize
        self.ttl = ttl
        self.policy: Policy = policy
        self._timer = timer
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe
        # cachetools orders and evicts; each entry carries its own expiry, checked on read.
        # Not a TTLCache: entries live for different times (the Redis entry's remaining
        # TTL, capped by ``ttl``), and cachetools has no LFU with per-entry expiry.
        self._items: LRUCache[str, _Entry] | LFUCache[str, _Entry] = (
            LRUCache(maxsize) if policy == "lru" else LFUCache(maxsize)
        )
        self._serving = True
        # Invalidation history, so a read that began before a drop cannot re-insert.
        self._seq = 0
        self._clear_seq = 0
        self._tombstones = _Tombstones(_TOMBSTONES)
        self._prefix_tombstones = _Tombstones(_PREFIX_TOMBSTONES)
        self._hits = self._misses = self._evictions = 0
        self._expirations = self._dropped = self._refused = 0

    # -- reads and writes ---------------------------------------------------------------
    @property
    def version(self) -> int:
        """Take this before the Redis read; pass it to `put` as ``since``."""
        with self._lock:
            return self._seq

    @property
    def serving(self) -> bool:
        """False while suspended (its coherence channel is down)."""
        return self._serving

    def get(self, key: str) -> dict[str, Any] | None:
        """The fields stored for ``key``, or ``None`` (absent, expired or suspended)."""
        held = self.held(key)
        return None if held is None else held.fields

    def held(self, key: str) -> Held | None:
        """The entry held for ``key`` (its fields and decoded values), or ``None``
        (absent, expired or suspended). Counted as `get` is."""
        with self._lock:
            item = self._items.get(key) if self._serving else None  # a use, when held
            if item is None:
                self._misses += 1
                return None
            if item.expires_at is not None and self._timer() >= item.expires_at:
                del self._items[key]
                self._expirations += 1
                self._misses += 1
                return None
            self._hits += 1
            return item

    def put(
        self,
        key: str,
        fields: Mapping[str, Any],
        ttl: float | None = None,
        *,
        since: int | None = None,
        decoded: Mapping[Any, Any] | None = None,
    ) -> bool:
        """Hold ``fields`` for ``key`` for ``min(ttl, self.ttl)`` seconds.

        Args:
            key: the entry key.
            fields: what the exact-layer read returned (kept as given; do not mutate it).
            ttl: the entry's remaining lifetime in Redis; ``None``: unbounded.
            since: `version` taken before the read; the put is refused when ``key`` was
                invalidated after it. ``None`` skips the check.
            decoded: values already decoded from ``fields``, by decoder (see `Held`).

        Returns:
            True if held.
        """
        lifetimes = [t for t in (ttl, self.ttl) if t is not None]
        if self.maxsize == 0 or (lifetimes and min(lifetimes) <= 0):
            return False
        with self._lock:
            if not self._serving or (since is not None and self._invalidated_since(key, since)):
                self._refused += 1
                return False
            expires_at = self._timer() + min(lifetimes) if lifetimes else None
            before = len(self._items) - (key in self._items)
            held = Held(dict(fields), expires_at)
            if decoded:
                held.decoded.update(decoded)
            self._items[key] = held  # a use; evicts when full
            self._evictions += before + 1 - len(self._items)
            return True

    def refresh(self, key: str, changes: Mapping[str, Any], ttl: float | None) -> bool:
        """A held entry's TTL slid in Redis: update its fields (``changes``, the new
        ``expires_at``) and hold it ``min(ttl, self.ttl)`` seconds from now. An entry
        not held (dropped meanwhile, or never put) stays absent.

        Returns:
            True if it is held, refreshed.
        """
        lifetimes = [t for t in (ttl, self.ttl) if t is not None]
        with self._lock:
            item = self._items.get(key) if self._serving else None
            if item is None:
                return False
            if lifetimes and min(lifetimes) <= 0:
                del self._items[key]
                self._expirations += 1
                return False
            expires_at = self._timer() + min(lifetimes) if lifetimes else None
            self._items[key] = Held({**item.fields, **changes}, expires_at)
            return True

    # -- invalidation -------------------------------------------------------------------
    def drop(self, key: str) -> bool:
        """Forget ``key`` (and refuse puts of reads that began before now).

        Returns:
            True if it was held.
        """
        with self._lock:
            self._seq += 1
            self._tombstones.mark(key, self._seq)
            return self._drop_held(key)

    def drop_many(self, keys: Iterable[str]) -> int:
        """Forget several keys; returns how many were held."""
        return sum(self.drop(k) for k in keys)

    def drop_prefix(self, prefix: str) -> int:
        """Forget every key starting with ``prefix`` (a tenant: ``<prefix>:<ns>:<token>:``).

        Returns:
            How many were held.
        """
        return self.drop_prefixes((prefix,))

    def drop_prefixes(self, prefixes: Iterable[str]) -> int:
        """Forget every key starting with any of ``prefixes``; returns how many were held."""
        starts = tuple(prefixes)
        with self._lock:
            self._seq += 1
            for prefix in starts:
                self._prefix_tombstones.mark(prefix, self._seq)
            doomed = [k for k in self._items if k.startswith(starts)]
            for key in doomed:
                self._drop_held(key)
            return len(doomed)

    def clear(self) -> int:
        """Forget everything; returns how many entries were held."""
        with self._lock:
            return self._clear()

    def suspend(self) -> None:
        """Clear and stop serving until `resume` (the coherence channel is down)."""
        with self._lock:
            self._serving = False
            self._clear()

    def resume(self) -> None:
        """Clear (messages may have been lost) and serve again."""
        with self._lock:
            self._clear()
            self._serving = True

    def apply(self, message: Mapping[str, Any]) -> None:
        """Apply one coherence message (``drop``, ``drop_prefix``, ``drop_prefixes`` or
        ``clear``).

        Raises:
            ValueError: the message is malformed or its op unknown.
        """
        op = message.get("op")
        if op == "drop":
            keys = message.get("keys")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"drop needs a list of string keys: {message!r}")
            self.drop_many(keys)
        elif op == "drop_prefix":
            prefix = message.get("prefix")
            if not isinstance(prefix, str) or not prefix:
                raise ValueError(f"drop_prefix needs a non-empty prefix: {message!r}")
            self.drop_prefix(prefix)
        elif op == "drop_prefixes":
            prefixes = message.get("prefixes")
            if (
                not isinstance(prefixes, list)
                or not prefixes
                or not all(isinstance(p, str) and p for p in prefixes)
            ):
                raise ValueError(f"drop_prefixes needs non-empty string prefixes: {message!r}")
            self.drop_prefixes(prefixes)
        elif op == "clear":
            self.clear()
        else:
            raise ValueError(f"unknown L1 op: {message!r}")

    # -- introspection ------------------------------------------------------------------
    def stats(self) -> L1Stats:
        with self._lock:
            return L1Stats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                dropped=self._dropped,
                refused=self._refused,
                size=len(self._items),
            )

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        """A snapshot of the keys held."""
        with self._lock:
            return iter(list(self._items))

    def keys(self) -> Iterator[str]:
        return iter(self)

    # -- helpers (lock held) ------------------------------------------------------------
    def _drop_held(self, key: str) -> bool:
        if self._items.pop(key, None) is None:
            return False
        self._dropped += 1
        return True

    def _clear(self) -> int:
        self._seq += 1
        self._clear_seq = self._seq
        self._tombstones.clear()
        self._prefix_tombstones.clear()
        n = len(self._items)
        self._items.clear()
        self._dropped += n
        return n

    def _invalidated_since(self, key: str, since: int) -> bool:
        floor = max(self._clear_seq, self._tombstones.floor, self._prefix_tombstones.floor)
        if since < floor:
            return True
        if self._tombstones.get(key, 0) > since:
            return True
        return any(seq > since and key.startswith(p) for p, seq in self._prefix_tombstones.items())
