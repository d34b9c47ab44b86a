"""The in-process L1 tier's steps of `EngineState`: start its coherence subscriber, say
what a write announces, keep, slide and drop copies. No I/O but the subscriber's thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import tracing
from .config import CacheConfig
from .core import read
from .core.read import Decoder
from .core.result import LookupResult
from .l1 import Held, LocalTier, drop_message
from .request import CacheRequest
from .resilience import CircuitBreaker
from .storage.l1_subscriber import L1Coherence
from .storage.layout import Layout


class LocalTierSteps:
    """Mixed into `EngineState`, which sets these attributes."""

    config: CacheConfig
    layout: Layout
    l1: LocalTier | None
    l1_sub: L1Coherence | None
    l1_pid: int
    setup_lock: threading.Lock
    clock: Callable[[], float]
    breaker: CircuitBreaker
    ready: bool

    def key(self, request: CacheRequest) -> str:
        raise NotImplementedError

    def cached_policy(self, tenant: str) -> Any:
        raise NotImplementedError

    def result(
        self, request: CacheRequest, decision: read.ReadDecision, started: float
    ) -> LookupResult:
        raise NotImplementedError

    def l1_hit(self, request: CacheRequest, decode: Decoder | None) -> LookupResult | None:
        """An exact hit on this process's L1 copy, decided and counted without the
        lookup's Redis set-up (its budget, its store, its policy read): the lookup's short
        path, for both drivers. ``None``: take the whole lookup, which decides the same
        way where this one would have served. It declines when there is no copy, or one
        not decoded by ``decode`` yet; for a tenant whose policy is not read yet or has
        no exact layer; with sliding TTLs (a hit writes to Redis); while the breaker is
        open (a lookup then bypasses the cache, L1 included) or the index is not set up;
        and while tracing is on (the whole lookup makes the span)."""
        started = time.perf_counter()
        if decode is None or self.config.sliding_ttl or not self.ready or tracing.active():
            return None
        pol = self.cached_policy(request.tenant)
        if pol is None or not pol.exact or not self.breaker.allow():
            return None
        tier = self.l1_tier()
        held = tier.held(self.key(request)) if tier is not None else None
        found = self.l1_reuse(request, held, decode, 0.0) if held is not None else None
        if found is None:
            return None
        request.budget.last = None  # no Redis wait spent: a store after it gets it all
        decision = read.exact_hit(found, stale=False, sliding=False, now=self.clock())
        return self.result(request, decision, started)

    def l1_tier(self) -> LocalTier | None:
        """The in-process tier, its coherence subscriber started on first use (and again
        in a forked child)."""
        if self.l1 is None:
            return None
        if self.l1_sub is None or self.l1_pid != os.getpid():
            with self.setup_lock:
                if self.l1_sub is None or self.l1_pid != os.getpid():
                    self.l1.clear()
                    self.l1_sub = L1Coherence(
                        self.l1,
                        self.layout.l1_channel,
                        redis_url=self.config.redis_url,
                        connect_timeout=self.config.connect_timeout,
                    ).start()
                    self.l1_pid = os.getpid()
        return self.l1

    def announce(self, request: CacheRequest) -> str | None:
        """The L1 coherence message a write of ``request`` carries, if announcing."""
        return drop_message([self.key(request)]) if self.config.l1_publish else None

    def l1_put(
        self,
        tier: LocalTier,
        key: str,
        fields: Mapping[str, Any],
        found: read.Found,
        since: int,
        decode: Decoder,
    ) -> None:
        """Hold what an exact read returned, with its decoded value when ``decode``'s
        values may be shared (`read.share_decoded`)."""
        entry = found.entry
        remaining = None if entry.expires_at is None else entry.expires_at - self.clock()
        if remaining is None or remaining > 0:
            decoded = {decode: found} if read.shares_decoded(decode) else None
            tier.put(key, fields, remaining, since=since, decoded=decoded)

    def l1_reuse(
        self, request: CacheRequest, held: Held, decode: Decoder, grace: float
    ) -> read.Found | None:
        """The value an L1 copy keeps decoded by ``decode``, if it still serves
        ``request`` (`read.reuse`); ``None``: decode the copy's fields as a read."""
        found = held.decoded.get(decode)
        if found is None:
            return None
        return read.reuse(request, found, now=self.clock(), grace=grace)

    @staticmethod
    def l1_keep(held: Held, decode: Decoder, found: read.Found) -> None:
        """Keep a value decoded from an L1 copy's fields with the copy, when it may be
        shared."""
        if read.shares_decoded(decode):
            held.decoded[decode] = found

    def l1_slid(self, touch: read.Touch) -> None:
        """A hit slid an entry's TTL in Redis: its L1 copy (if held) expires with it, not
        at the expiry it was read with."""
        if self.l1 is not None:
            remaining = touch.expires_at - self.clock()
            self.l1.refresh(touch.key, {"expires_at": repr(touch.expires_at).encode()}, remaining)

    def l1_after_invalidate(self, tenant: str | None, only_tenant: bool) -> tuple[str, ...]:
        """Drop this process's L1 copies after an invalidation; returns the tenant's key
        prefixes other processes must drop (one per bucket on a cluster; empty:
        everything)."""
        prefixes = self.layout.tenant_prefixes(tenant) if tenant and only_tenant else ()
        if self.l1 is not None:
            if prefixes:
                self.l1.drop_prefixes(prefixes)
            else:
                self.l1.clear()
        return prefixes
