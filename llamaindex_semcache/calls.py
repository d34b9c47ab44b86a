"""The cached shapes of a `SemanticCacheLLM` call: plain, async, stream, async stream.

Each asks the engine first and serves a hit (decoded by the endpoint's `Codec`, marked,
reported by a `SemanticCacheHitEvent`); on a miss it calls the wrapped LLM and stores
its answer (a stream's final response, once the stream has completed). When the LLM
raises, a matching stale entry is served instead if the wrapper allows it; a stream can
switch to one only before its first chunk. A miss that leads its key (``coalesce`` on)
and ends without a store (the LLM raised, a stream was cut or left unfinished, the answer
could not be encoded) is handed to `CacheEngine.abandon`, so the identical calls waiting
for it go on at once. Cache faults are counted by the engine and never break a call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from llama_index.core.llms.llm import LLM
from llama_index_instrumentation.dispatcher import Dispatcher
from pydantic import BaseModel

from semcache_core import CacheEngine, LookupResult
from semcache_core.request import CacheRequest

from .events import lookup_event
from .serialization import response_text, response_usage

R = TypeVar("R")


@dataclass(frozen=True)
class Codec(Generic[R]):
    """How one kind of answer is stored, read back, and marked when served."""

    name: str
    encode: Callable[[R], bytes]
    decode: Callable[[bytes, str], R]
    serve: Callable[[R, LookupResult], R]


def final(response: R) -> R:
    """The last chunk of a stream as the answer to store (no delta)."""
    return cast(R, cast(BaseModel, response).model_copy(update={"delta": None}))


@dataclass(frozen=True)
class CachedCalls:
    """One wrapper's cache, as its calls see it.

    Attributes:
        engine: the wrapper's `CacheEngine`.
        llm: the wrapped LLM (its model name goes with the usage stored).
        stale_if_error: serve a matching stale entry when the LLM raises.
        dispatcher: where hit and miss events go.
    """

    engine: CacheEngine
    llm: LLM
    stale_if_error: bool
    dispatcher: Dispatcher

    # -- the four shapes of a call ------------------------------------------------------
    def call(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: Codec[R],
        call: Callable[[], R],
    ) -> R:
        """A hit, else ``call()``'s answer, stored."""
        found = self._lookup(endpoint, request, codec)
        hit, looked = found
        if hit is not None:
            return hit
        stored = False
        try:
            try:
                value = call()
            except Exception:
                self._abandon(looked)  # the waiters go on now; one of them retries
                stale = self._lookup(endpoint, request, codec, stale=True)[0]
                if stale is None:
                    raise  # the provider's own exception object, unchanged
                return stale
            stored = self._save(request, codec, value)
            return value
        finally:
            if not stored:
                self._abandon(looked)

    async def acall(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: Codec[R],
        call: Callable[[], Awaitable[R]],
    ) -> R:
        """The async twin of `call`."""
        found = await self._alookup(endpoint, request, codec)
        hit, looked = found
        if hit is not None:
            return hit
        stored = False
        try:
            try:
                value = await call()
            except Exception:
                await self._aabandon(looked)
                stale = (await self._alookup(endpoint, request, codec, stale=True))[0]
                if stale is None:
                    raise
                return stale
            stored = await self._asave(request, codec, value)
            return value
        finally:
            if not stored:
                await self._aabandon(looked)

    def stream(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: Codec[R],
        start: Callable[[], Iterator[R]],
        replay: Callable[[R], Iterator[R]],
    ) -> Iterator[R]:
        """Replay a hit as a stream; on a miss pass the LLM's stream through and store
        its final response once the stream has completed."""
        found = self._lookup(endpoint, request, codec)
        hit, looked = found
        if hit is not None:
            yield from replay(hit)
            return
        last: R | None = None
        stored = False
        try:
            try:
                for chunk in start():
                    last = chunk
                    yield chunk
            except Exception:
                self._abandon(looked)
                # Stale-if-error only before the first chunk: a stream cannot switch sources.
                stale: R | None = None
                if last is None:
                    stale = self._lookup(endpoint, request, codec, True)[0]
                if stale is None:
                    raise
                yield from replay(stale)
                return
            if last is not None:
                stored = self._save(request, codec, final(last))
        finally:  # also when the consumer stops early (the generator is closed)
            if not stored:
                self._abandon(looked)

    async def astream(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: Codec[R],
        start: Callable[[], Awaitable[AsyncIterator[R]]],
        replay: Callable[[R], Iterator[R]],
    ) -> AsyncIterator[R]:
        """The async twin of `stream`."""
        found = await self._alookup(endpoint, request, codec)
        hit, looked = found
        if hit is not None:
            for chunk in replay(hit):
                yield chunk
            return
        last: R | None = None
        stored = False
        try:
            try:
                async for chunk in await start():
                    last = chunk
                    yield chunk
            except Exception:
                await self._aabandon(looked)
                stale: R | None = None
                if last is None:
                    stale = (await self._alookup(endpoint, request, codec, True))[0]
                if stale is None:
                    raise
                for chunk in replay(stale):
                    yield chunk
                return
            if last is not None:
                stored = await self._asave(request, codec, final(last))
        finally:
            if not stored:
                await self._aabandon(looked)

    # -- engine calls, sync and async ---------------------------------------------------
    def _emit(self, endpoint: str, request: CacheRequest, result: LookupResult) -> None:
        try:
            self.dispatcher.event(lookup_event(endpoint, request.tenant, result))
        except Exception as exc:  # a failing event handler must not fail the call
            self.engine.report_error("event", exc, tenant=request.tenant)

    def _served(
        self,
        endpoint: str,
        request: CacheRequest,
        codec: Codec[R],
        result: LookupResult,
    ) -> R | None:
        self._emit(endpoint, request, result)
        if not result.hit:
            return None
        try:
            return codec.serve(result.value, result)
        except Exception as exc:
            self.engine.report_error("serve", exc, tenant=request.tenant)
            return None

    def _lookup(
        self, endpoint: str, request: CacheRequest | None, codec: Codec[R], stale: bool = False
    ) -> tuple[R | None, LookupResult | None]:
        """The served value (``None`` on a miss) and the lookup's result."""
        if request is None or (stale and not self.stale_if_error):
            return None, None
        result = self.engine.lookup(
            request, decode=codec.decode, text_of=response_text, stale=stale
        )
        return self._served(endpoint, request, codec, result), result

    async def _alookup(
        self, endpoint: str, request: CacheRequest | None, codec: Codec[R], stale: bool = False
    ) -> tuple[R | None, LookupResult | None]:
        if request is None or (stale and not self.stale_if_error):
            return None, None
        result = await self.engine.alookup(
            request, decode=codec.decode, text_of=response_text, stale=stale
        )
        return self._served(endpoint, request, codec, result), result

    def _abandon(self, looked: LookupResult | None) -> None:
        """The call a leading miss made will not be stored: its waiters go on now."""
        if looked is not None and looked.leads:
            self.engine.abandon(looked)

    async def _aabandon(self, looked: LookupResult | None) -> None:
        if looked is not None and looked.leads:
            await self.engine.aabandon(looked)

    def _payload(self, request: CacheRequest, codec: Codec[R], value: R) -> bytes | None:
        try:
            return codec.encode(value)
        except Exception as exc:
            self.engine.report_error("serialize", exc, tenant=request.tenant)
            return None

    def _save(self, request: CacheRequest | None, codec: Codec[R], value: R) -> bool:
        """Store the answer; True if the engine was handed it (its store ends any
        coalescing flight, written or not)."""
        if request is None:
            return False
        payload = self._payload(request, codec, value)
        if payload is None:
            return False
        self.engine.store(
            request,
            payload,
            codec=codec.name,
            text=response_text(value),
            usage=response_usage(value, self._model_name()),
        )
        return True

    async def _asave(self, request: CacheRequest | None, codec: Codec[R], value: R) -> bool:
        if request is None:
            return False
        payload = self._payload(request, codec, value)
        if payload is None:
            return False
        await self.engine.astore(
            request,
            payload,
            codec=codec.name,
            text=response_text(value),
            usage=response_usage(value, self._model_name()),
        )
        return True

    def _model_name(self) -> str | None:
        try:
            name = self.llm.metadata.model_name
        except Exception:
            return None
        return name if isinstance(name, str) and name else None
