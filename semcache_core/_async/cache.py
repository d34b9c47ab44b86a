"""The hot path, async, written once: setup, lookup and store.

Each method is a short read -> decide -> apply loop: it reads through the store, hands
what it read to the pure decisions of `semcache_core.core.read`, and applies what they
return. Every fault is caught here: a lookup becomes a miss (`Outcome.ERROR`), a store
is skipped, and the fault is counted and logged at a bounded rate. `_sync/cache.py` is
generated from this file by ``scripts/unasync.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import deadline, tracing
from ..coalesce import Ticket
from ..core import read
from ..core.result import LookupResult
from ..core.rules import Outcome
from ..core.verify import Verification
from ..entry import CorruptEntry, DecodeFailed, entry_fields
from ..errors import EmbedderMismatchError
from ..l1 import drop_message
from ..pricing import Usage
from ..request import CacheRequest
from ..state import Decoder, EngineState, TextOf, identity
from ..tenant_policy import TenantPolicy
from . import index, reads
from .coalescing import AsyncCoalescing
from .verdicts import judge

if TYPE_CHECKING:
    from ..storage._async.store import AsyncStore
    from ..storage.clients import AsyncStores


class AsyncCache:
    """Lookups and stores of one engine (the async driver)."""

    def __init__(
        self, state: EngineState, stores: AsyncStores, coalescing: AsyncCoalescing | None
    ) -> None:
        self.state = state
        self.stores = stores
        self.coalescing = coalescing
        # One round trip per lookup (`reads`), unless Redis refused the script lately.
        self.script_off_until = 0.0

    # -- setup (semcache_core/_async/index.py) ------------------------------------------
    async def setup(self, store: AsyncStore | None = None) -> None:
        """See `index.setup` (through ``store``: an administration call passes its own)."""
        await index.setup(self.state, store or await self.stores.get())

    async def ensure_index(self, store: AsyncStore) -> None:
        """See `index.ensure_index`."""
        await index.ensure_index(self.state, store)

    # -- lookup --------------------------------------------------------------------------
    async def lookup(
        self,
        request: CacheRequest,
        decode: Decoder | None = None,
        *,
        text_of: TextOf | None = None,
        stale: bool = False,
    ) -> LookupResult:
        """See `CacheEngine.lookup`."""
        state = self.state
        if state.l1 is not None and not stale:
            held = state.l1_hit(request, decode)
            if held is not None:
                await self.flush_counts()
                return held
        # The Redis wait this call may add, shared with its store (`storage.deadline`).
        budget = deadline.lookup_budget(request.budget, state.config.socket_timeout, state.trips)
        with deadline.spending(budget), self.state.span("semcache.lookup", request) as span:
            result = await self._lookup(request, decode, text_of, stale)
            if span is not None:
                span.set_attribute("semcache.outcome", result.outcome.value)
                span.set_attribute("semcache.hit", result.hit)
                if result.similarity is not None:
                    span.set_attribute("semcache.similarity", result.similarity)
                if result.outcome is Outcome.ERROR:
                    tracing.mark_error(span, "the lookup failed and was served as a miss")
            await self.flush_counts()
        return result

    async def _lookup(
        self, request: CacheRequest, decode: Decoder | None, text_of: TextOf | None, stale: bool
    ) -> LookupResult:
        coalescing = self.coalescing
        if coalescing is None or stale:
            return await self._lookup_once(request, decode, text_of, stale)
        found = await self._lookup_once(request, decode, text_of, False, record=False)

        async def misses() -> bool:
            nonlocal found  # each wait ends with another look
            found = await self._lookup_once(request, decode, text_of, False, record=False)
            return found.outcome in (Outcome.MISS, Outcome.SHADOW_HIT)

        if found.outcome in (Outcome.MISS, Outcome.SHADOW_HIT):
            key, store = self.state.key(request), await self._lock_store()
            with deadline.unbounded():  # waiting for a leader: bounded by coalesce_wait
                ticket = await coalescing.turn(key, store, misses)
            if ticket is not None:
                return self.state.leading(request, found, ticket)
        self.state.record(request, found)
        return found

    async def _lookup_once(
        self,
        request: CacheRequest,
        decode: Decoder | None,
        text_of: TextOf | None,
        stale: bool,
        *,
        record: bool = True,
    ) -> LookupResult:
        """One pass of a lookup (a coalesced waiter makes a second one)."""
        state = self.state
        started = time.perf_counter()
        decode = decode or identity
        if not state.breaker.allow():
            bypass = read.ReadDecision(Outcome.BYPASS)
            return state.result(request, bypass, started, stale=stale, record=record)
        try:
            store = await self.stores.get()
            await self.setup()
            pol = await self.policy(store, request.tenant)
            decision = await reads.lookup_read(self, store, request, pol, decode, stale)
            if decision.touch is not None:
                touch = decision.touch
                await store.touch(touch.key, touch.ttl, touch.expires_at)
                state.l1_slid(touch)
            if decision.park is not None:
                state.park(request, decision.park, text_of)
            state.breaker.record_success()
            return state.result(request, decision, started, stale=stale, record=record)
        except EmbedderMismatchError:
            raise  # another embedding model than the index's: loud, never a silent miss
        except Exception as exc:
            if isinstance(exc, DecodeFailed):
                state.breaker.record_success()  # Redis answered; the framework failed
            state.fault("decode" if isinstance(exc, DecodeFailed) else "lookup", request, exc)
            return state.result(
                request, read.ReadDecision(Outcome.ERROR), started, stale=stale, record=record
            )

    async def accept(
        self,
        store: AsyncStore,
        request: CacheRequest,
        key: str,
        fields: dict[str, Any],
        decode: Decoder,
        stale: bool,
    ) -> read.Found | None:
        """`read.accept`, applying its verdicts on bad entries: a corrupt one is deleted
        (and dropped from every L1), a foreign one refused."""
        state = self.state
        grace = state.config.stale_grace if stale else 0.0
        try:
            return read.accept(
                request,
                key,
                fields,
                decode,
                now=state.clock(),
                distance=fields.get("distance"),
                grace=grace,
            )
        except CorruptEntry as exc:
            state.corrupt(request, key, exc)
            await store.unlink([key])
            await self.drop_l1([key])
        except read.ForeignEntry:
            state.foreign(request, key)
        return None

    async def verify(
        self, request: CacheRequest, sem: read.SemanticPolicy, outcome: Outcome, found: read.Found
    ) -> Verification:
        decided = read.precheck(sem, outcome, request.question, found.entry.question)
        if decided is not None:
            return decided
        assert request.question is not None and found.entry.question is not None
        try:
            verdict: Verification = await self.state.verifier.averify(
                request.question, found.entry.question
            )
            return verdict
        except Exception as exc:
            return self.state.verify_failed(request, exc)

    # -- store ---------------------------------------------------------------------------
    async def store(
        self,
        request: CacheRequest,
        payload: bytes,
        *,
        codec: str = "bytes",
        text: str | None = None,
        usage: Usage | None = None,
    ) -> bool:
        """See `CacheEngine.store`."""
        state = self.state
        key = state.key(request)
        budget = deadline.store_budget(request.budget, state.config.socket_timeout, state.trips)
        with deadline.spending(budget), state.span("semcache.store", request) as span:
            try:
                written = await self._store_once(request, payload, codec, text, usage)
                if span is not None:
                    span.set_attribute("semcache.stored", written)
            finally:
                # Written, skipped or failed: this process's L1 copy is stale (other
                # processes hear it from the write itself), and the key's coalesced
                # waiters may look again.
                if state.l1 is not None:
                    state.l1.drop(key)
                if self.coalescing is not None:
                    await self.coalescing.finish(key, await self._lock_store())
            await self.flush_counts()
        return written

    async def _store_once(
        self,
        request: CacheRequest,
        payload: bytes,
        codec: str,
        text: str | None,
        usage: Usage | None,
    ) -> bool:
        state = self.state
        if not state.breaker.allow_write():
            state.stats.record(request.tenant, "stores_skipped")
            return False
        try:
            store = await self.stores.get()
            await self.setup(store)  # (made again below if Redis came back empty)
            pol = await self.policy(store, request.tenant)
            write, ttl = state.store_ttl(request, pol)
            if write:
                vector = await self.embed(request, pol, create=True)
                fields = entry_fields(
                    request,
                    payload=payload,
                    codec=codec,
                    vector=vector,
                    now=state.clock(),
                    ttl=ttl,
                    usage=usage.to_json() if usage is not None else None,
                )
                key, announce = state.key(request), state.announce(request)
                if not await store.write(key, fields, ttl, announce):
                    # Redis came back empty (or the index was dropped): make it again,
                    # and write the entry again so that it is indexed now.
                    state.ready = False
                    await self.setup(store)
                    await store.write(key, fields, ttl, announce)
                await index.maintain(state, store)
        except EmbedderMismatchError:
            raise
        except Exception as exc:
            state.write_fault("store", request, exc)
            return False
        state.breaker.record_success()
        await judge(state, store, request, pol, payload, text)
        if write:
            state.stats.record(request.tenant, "stores")
        return write

    async def abandon(self, result: LookupResult) -> bool:
        """See `CacheEngine.abandon`."""
        ticket = result.lease
        if self.coalescing is None or not isinstance(ticket, Ticket):
            return False
        return await self.coalescing.abandon(ticket, await self._lock_store())

    # -- shared steps --------------------------------------------------------------------
    async def policy(self, store: AsyncStore, tenant: str) -> TenantPolicy:
        """The tenant's effective policy, from the local copy while it is fresh."""
        pol = self.state.cached_policy(tenant)
        if pol is None:
            pol = self.state.cache_policy(tenant, await store.read_policy(tenant))
        return pol

    async def embed(
        self,
        request: CacheRequest,
        pol: TenantPolicy,
        *,
        create: bool = False,
        at_hand: bool = False,
    ) -> bytes | None:
        """The request's question as index bytes; ``None`` when it is not embedded.
        ``create``: a store may create the index from its first vector; ``at_hand``:
        only if that costs less than a round trip (`CachedEmbedder.at_hand`)."""
        state = self.state
        if not state.wants_vector(request, pol):
            return None
        assert state.embedder is not None and request.question is not None
        vector = request.vectors.get(state.embedder)  # embedded by this request's lookup
        if (
            vector is None
            and at_hand
            and (state.dims is None or not state.embedder_at_hand(request.question))
        ):
            return None
        if vector is None:
            try:
                vector = await state.embedder.aembed(request.question)
            except Exception as exc:
                state.embed_failed(request, exc)
                return None
            request.vectors[state.embedder] = vector
        if state.dims is None:
            await index.learn_dims(self.state, await self.stores.get(), list(vector), create)
            if state.dims is None:
                return None  # no index yet: nothing to find, and a lookup creates nothing
        return state.vector_bytes(vector)

    async def drop_l1(self, keys: list[str]) -> None:
        """Drop keys from this process's L1 and (announcing) every other process's."""
        state = self.state
        if state.l1 is not None:
            state.l1.drop_many(keys)
        if state.config.l1_publish and state.breaker.allow_write():
            try:
                store = await self.stores.get()
                await store.publish(drop_message(keys))
            except Exception as exc:
                state.fault("l1_publish", None, exc, breaker=False)

    async def _lock_store(self) -> AsyncStore | None:
        """The store coalescing locks go through (``None``: this process only)."""
        if self.state.config.coalesce != "redis":
            return None
        return await self.stores.get()

    async def flush_counts(
        self, force: bool = False, store: AsyncStore | None = None, *, timer: bool = False
    ) -> None:
        """Write the buffered counters when due (``force``: now), through ``store`` if
        given (`stats` passes the administration store: patient, retried); ``timer``: the
        flush timer's call, see `EngineState.counts_failed`."""
        taken = self.state.due_counts(force, patient=store is not None)
        if taken is None:
            return
        commands, restore = taken
        try:
            if store is None:
                store = await self.stores.get()
            await store.add_counts(commands)
        except Exception as exc:
            self.state.counts_failed(exc, restore, timer=timer)
