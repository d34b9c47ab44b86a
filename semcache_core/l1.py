"""An optional in-process tier in front of the exact layer, kept coherent over pub/sub.

`LocalTier` holds what an exact-layer HMGET returned (``key -> fields``) for a short
time, so a repeated identical request costs no Redis round trip. It is a bounded LRU or
LFU with a TTL, thread-safe, and knows nothing of Redis.

`L1Coherence` keeps every process's tier honest. A daemon thread holds one pub/sub
connection subscribed to ``<key_prefix>:__l1__:<namespace>`` and applies what writers
publish there (`publish_drop`, `publish_drop_prefix`, `publish_clear` and their async
twins) after an overwrite or an invalidation. While it is not subscribed (Redis gone,
connection killed, or silent past ``liveness``) the tier is cleared and serves nothing,
and it is cleared again once the subscription is back, because messages published in
between were lost.

A read that races an invalidation must not put the old value back after the drop was
applied: take `LocalTier.version` before the Redis read and pass it as ``since=`` to
`LocalTier.put`, which refuses when the key was dropped (or its tenant, or everything)
after that version.

Messages are JSON: ``{"op": "drop", "keys": [...]}``, ``{"op": "drop_prefix",
"prefix": ...}``, ``{"op": "clear"}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis
from cachetools import FIFOCache, LFUCache, LRUCache
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("semcache.l1")

Policy = Literal["lru", "lfu"]
_TOMBSTONES = 4096
_PREFIX_TOMBSTONES = 64


def drop_message(keys: Iterable[str]) -> str:
    """JSON telling every tier to drop these entry keys."""
    return json.dumps({"op": "drop", "keys": list(keys)}, separators=(",", ":"))


def drop_prefix_message(prefix: str) -> str:
    """JSON telling every tier to drop every key starting with ``prefix``."""
    return json.dumps({"op": "drop_prefix", "prefix": prefix}, separators=(",", ":"))


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


# An entry: the fields, and when they expire (monotonic seconds; None: never).
_Entry = tuple[dict[str, Any], float | None]


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
        with self._lock:
            item = self._items.get(key) if self._serving else None  # a use, when held
            if item is None:
                self._misses += 1
                return None
            fields, expires_at = item
            if expires_at is not None and self._timer() >= expires_at:
                del self._items[key]
                self._expirations += 1
                self._misses += 1
                return None
            self._hits += 1
            return fields

    def put(
        self,
        key: str,
        fields: Mapping[str, Any],
        ttl: float | None = None,
        *,
        since: int | None = None,
    ) -> bool:
        """Hold ``fields`` for ``key`` for ``min(ttl, self.ttl)`` seconds.

        Args:
            key: the entry key.
            fields: what the exact-layer read returned (kept as given; do not mutate it).
            ttl: the entry's remaining lifetime in Redis; ``None``: unbounded.
            since: `version` taken before the read; the put is refused when ``key`` was
                invalidated after it. ``None`` skips the check.

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
            held = len(self._items) - (key in self._items)
            self._items[key] = (dict(fields), expires_at)  # a use; evicts when full
            self._evictions += held + 1 - len(self._items)
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
        with self._lock:
            self._seq += 1
            self._prefix_tombstones.mark(prefix, self._seq)
            doomed = [k for k in self._items if k.startswith(prefix)]
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
        """Apply one coherence message (``drop``, ``drop_prefix`` or ``clear``).

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


# -- the subscriber ---------------------------------------------------------------------
class L1Coherence:
    """Keeps a `LocalTier` coherent with every other process of the namespace.

    A daemon thread subscribes to ``channel`` on its own connection and applies each
    message to ``tier``. It PINGs every ``heartbeat`` seconds; when the connection fails,
    or nothing (not even a PONG) arrives for ``liveness`` seconds, the tier is suspended
    (cleared, serving nothing) and the thread reconnects with exponential backoff
    (``backoff`` doubling up to ``max_backoff``). Once subscribed again the tier is cleared
    and resumes. So a process serves from its tier only while it hears the channel; a
    message published to a live subscription is applied within one network round trip.

    Args:
        tier: the tier to keep coherent; suspended until the first subscription.
        channel: from `l1_channel`.
        redis_url: where Redis is; the subscriber makes its own client from it.
        client: alternatively, a client whose pool lends the subscriber one connection
            for as long as it runs (it should not retry commands by itself).
        heartbeat: seconds between PINGs on the subscription.
        liveness: seconds of silence after which the subscription counts as dead.
        backoff: first reconnect delay in seconds.
        max_backoff: reconnect delay cap.
        connect_timeout: seconds to open the connection (only with ``redis_url``).

    Example:
        >>> tier = LocalTier(10_000, ttl=30.0)
        >>> sub = L1Coherence(tier, l1_channel("semcache", "default"), redis_url=url).start()
        >>> sub.wait_connected(2.0)
        True
        >>> publish_drop(client, l1_channel("semcache", "default"), [key])  # anywhere
        1
    """

    def __init__(
        self,
        tier: LocalTier,
        channel: str,
        *,
        redis_url: str | None = None,
        client: redis.Redis | None = None,
        heartbeat: float = 0.25,
        liveness: float = 0.75,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        connect_timeout: float = 0.5,
    ) -> None:
        if (redis_url is None) == (client is None):
            raise ValueError("pass exactly one of redis_url= or client=")
        if not 0 < heartbeat < liveness:
            raise ValueError("need 0 < heartbeat < liveness")
        self.tier = tier
        self.channel = channel
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._own_client = client is None
        self._client: redis.Redis = (
            client
            if client is not None
            else redis.Redis.from_url(
                redis_url,  # type: ignore[arg-type]
                socket_connect_timeout=connect_timeout,
                socket_timeout=liveness,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        )
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self.connects = 0  # successful subscriptions (the first one included)
        self.disconnects = 0
        self.messages = 0
        self.bad_messages = 0
        tier.suspend()

    @property
    def connected(self) -> bool:
        """Subscribed and heard from within ``liveness``: the tier may serve."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed (or ``timeout``); True if subscribed."""
        return self._connected.wait(timeout)

    def start(self) -> L1Coherence:
        """Start the subscriber thread (idempotent); returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"semcache-l1:{self.channel}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread, suspend the tier, close what this object opened."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self._down()
        if self._own_client:
            self._client.close()

    close = stop

    def _down(self) -> None:
        self._connected.clear()
        self.tier.suspend()
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to save
                ps.close()

    def _run(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            try:
                self._listen()
                delay = self.backoff
            except Exception as exc:
                was_up = self._connected.is_set()
                self._down()
                if was_up:
                    self.disconnects += 1
                    logger.warning("semcache L1: lost %s (%s); tier cleared", self.channel, exc)
                    delay = self.backoff  # first retry soon after a drop
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff)
        self._down()

    def _listen(self) -> None:
        """Subscribe and apply messages until stopped; raises when the link fails."""
        ps = self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        ps.subscribe(self.channel)
        started = last_heard = last_ping = time.monotonic()
        while not self._stop.is_set():
            msg = ps.get_message(timeout=self.heartbeat)
            now = time.monotonic()
            if msg is not None:
                last_heard = now
                self._handle(msg)
            elif not self._connected.is_set() and now - started > self.liveness:
                raise ConnectionError("no subscribe confirmation")
            if now - last_heard > self.liveness:
                raise ConnectionError(f"silent for {now - last_heard:.2f} s")
            if now - last_ping >= self.heartbeat:
                ps.ping()
                last_ping = now

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "subscribe":
            # Messages published while we were away are lost: start empty.
            self.tier.resume()
            self.connects += 1
            self._connected.set()
        elif kind == "message":
            self.messages += 1
            try:
                data = msg["data"]
                if isinstance(data, bytes):
                    data = data.decode("utf-8")
                self.tier.apply(json.loads(data))
            except (ValueError, TypeError, AttributeError) as exc:
                # A message we cannot read may have meant "drop": drop everything.
                self.bad_messages += 1
                self.tier.clear()
                logger.warning("semcache L1: unreadable message on %s: %s", self.channel, exc)
