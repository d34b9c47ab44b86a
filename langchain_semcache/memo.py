"""`RequestMemo`: the `CacheRequest` of each distinct LangChain call, built once.

LangChain calls ``lookup(prompt, llm_string)`` and, after a miss, ``update`` with the
same two strings; an application repeats prompts. Building a request parses the
prompt's JSON and hashes canonical JSON several times (tenant, scope, partition, exact
key). The memo maps everything that goes into a request to the request itself, so a
repeat costs one dict lookup, and a lookup's miss and its update share one request (and
so its embedding, `CacheRequest.vectors`).

The key holds every input: the prompt, the ``llm_string``, the tenant the adapter
resolved (its own, or the run's), whether the run is structured output, the declared
question (``question_vars``), and the whole `cache_context` in force (tenant, tags,
TTL, scope, ``semantic``, question). The engine's settings are fixed for its life. Two
calls that differ in any of them never share a request.
"""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache

from semcache_core.request import CacheRequest, canonical_json
from semcache_core.tenancy import RequestContext, current_context

# Characters of prompts (and llm_strings) held at most, and the largest one memoized.
MEMO_CHARS = 2_000_000
MEMO_PROMPT_CHARS = 200_000
# An entry holds the prompt about three times (the key, the request's prompt, its
# scope's messages), and a fixed part (the key tuple, the request, its digests).
_OVERHEAD = 512


def context_key(ctx: RequestContext) -> tuple[Any, ...]:
    """A hashable form of everything a `cache_context` adds to a request."""
    scope = canonical_json(dict(ctx.scope)) if ctx.scope else b""
    return (ctx.tenant, ctx.tags, ctx.ttl, scope, ctx.semantic, ctx.question)


class RequestMemo:
    """A bounded, thread-safe LRU ``call inputs -> CacheRequest`` (by prompt characters)."""

    def __init__(self, max_chars: int = MEMO_CHARS) -> None:
        self._lock = threading.Lock()
        self._items: LRUCache[tuple[Any, ...], CacheRequest] = LRUCache(
            max_chars, getsizeof=lambda request: 3 * len(request.prompt) + _OVERHEAD
        )
        self._ctx: tuple[RequestContext, tuple[Any, ...]] | None = None

    def key(
        self,
        prompt: str,
        llm_string: str,
        tenant: str | None,
        structured: bool,
        question: str | None,
    ) -> tuple[Any, ...] | None:
        """The memo key of a call, or ``None`` for a prompt too large to keep."""
        if len(prompt) + len(llm_string) > MEMO_PROMPT_CHARS:
            return None
        ctx = current_context()
        known = self._ctx
        if known is not None and known[0] is ctx:
            ctx_key = known[1]
        else:
            ctx_key = context_key(ctx)
            self._ctx = (ctx, ctx_key)
        return (prompt, llm_string, tenant, structured, question, ctx_key)

    def get(self, key: tuple[Any, ...] | None) -> CacheRequest | None:
        if key is None:
            return None
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[Any, ...] | None, request: CacheRequest) -> None:
        if key is None:
            return
        with self._lock:
            self._items[key] = request

    def __len__(self) -> int:
        return len(self._items)
