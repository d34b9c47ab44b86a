"""LlamaIndex instrumentation events for cache lookups.

A served hit skips the wrapped LLM, so none of its ``LLMChatStartEvent`` /
``LLMChatEndEvent`` (or callback-manager ``LLM`` events) fire: these events are how a
handler sees hits. Observe them with any ``BaseEventHandler`` on the root dispatcher.

Example:
    >>> from llama_index.core.instrumentation import get_dispatcher
    >>> class Hits(BaseEventHandler):
    ...     def handle(self, event, **kwargs):
    ...         if isinstance(event, SemanticCacheHitEvent):
    ...             print(event.layer, event.similarity)
    >>> get_dispatcher().add_event_handler(Hits())
"""

from __future__ import annotations

from llama_index_instrumentation.base import BaseEvent

from semcache_core import LookupResult


class SemanticCacheEvent(BaseEvent):
    """A cache lookup made for an LLM call.

    Attributes:
        endpoint: the LLM method (``chat``, ``astream_complete``, ``structured_predict``...).
        tenant: whose entries were searched.
        outcome: the engine's outcome (``exact_hit``, ``semantic_hit``, ``promoted``,
            ``shadow_hit``, ``miss``, ``bypass``, ``error``).
        similarity: cosine similarity of the nearest semantic candidate, if any.
        stale: a stale-if-error lookup, made after the LLM failed.
        seconds: how long the lookup took.
    """

    endpoint: str
    tenant: str
    outcome: str
    similarity: float | None = None
    stale: bool = False
    seconds: float = 0.0

    @classmethod
    def class_name(cls) -> str:
        return "SemanticCacheEvent"


class SemanticCacheHitEvent(SemanticCacheEvent):
    """An answer was served from the cache; the wrapped LLM was not called.

    Attributes:
        layer: ``exact`` or ``semantic``.
        cached_question: the question the served entry was stored for.
        cached_at: when it was stored (epoch seconds).
    """

    layer: str | None = None
    cached_question: str | None = None
    cached_at: float | None = None

    @classmethod
    def class_name(cls) -> str:
        return "SemanticCacheHitEvent"


class SemanticCacheMissEvent(SemanticCacheEvent):
    """Nothing was served; the wrapped LLM answers (or, for a stale lookup, its error
    is raised)."""

    @classmethod
    def class_name(cls) -> str:
        return "SemanticCacheMissEvent"


def lookup_event(endpoint: str, tenant: str, result: LookupResult) -> SemanticCacheEvent:
    """The event that reports ``result``, a lookup made for ``endpoint``."""
    if result.hit:
        return SemanticCacheHitEvent(
            endpoint=endpoint,
            tenant=tenant,
            outcome=result.outcome.value,
            similarity=result.similarity,
            stale=result.stale,
            seconds=result.seconds,
            layer=result.layer,
            cached_question=result.question,
            cached_at=result.created_at,
        )
    return SemanticCacheMissEvent(
        endpoint=endpoint,
        tenant=tenant,
        outcome=result.outcome.value,
        similarity=result.similarity,
        stale=result.stale,
        seconds=result.seconds,
    )
