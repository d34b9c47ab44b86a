"""`LookupResult`, what a lookup found, and `last_lookup`, the latest one in a context."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from .rules import Outcome

_LAST: contextvars.ContextVar[LookupResult | None] = contextvars.ContextVar(
    "semcache_last_lookup", default=None
)


def last_lookup() -> LookupResult | None:
    """The result of the latest lookup made in this thread or task, or ``None``.

    Where a framework returns the user's own object (a pydantic model from structured
    output, a bare string from ``predict``), this tells whether it came from the cache::

        person = structured_llm.invoke("Alice is 31 years old")
        if (hit := last_lookup()) and hit.hit:
            print("cached", hit.layer, hit.similarity)
    """
    return _LAST.get()


def remember_lookup(result: LookupResult) -> None:
    """Make ``result`` what `last_lookup` returns in the current context: for adapters
    whose framework runs the lookup in a copied context (LangChain's runnables)."""
    _LAST.set(result)


@dataclass(frozen=True)
class LookupResult:
    """What a lookup found. A miss is a value, never an exception.

    Attributes:
        outcome: how the lookup ended.
        value: the decoded payload on a hit, else ``None``.
        similarity: cosine similarity of the nearest semantic candidate (hit or not).
        key: the Redis key of the served entry (or, for a shadow hit, of the candidate).
        question: the cached question that answered (semantic hits) or would have
            answered (shadow hits).
        created_at: when the served entry was written (epoch seconds).
        seconds: time the lookup took.
        tokens_saved: tokens of the cached call, on a served hit (0 if unknown).
        cost_saved_usd: what they cost at the price table (0 if usage or price unknown).
        stale: served by a stale-if-error lookup (``lookup(..., stale=True)``); the
            entry may be past its TTL (within ``stale_grace``).
        guard: for a ``guarded`` lookup, the verifier rule that refused the candidate
            (``"number"``, ``"negation"``, ``"order"``...).
        lease: with ``coalesce`` on, a miss that made the caller the key's leader
            carries its leadership (opaque): concurrent identical lookups wait for this
            caller's store. If the LLM call fails, hand the result to
            `CacheEngine.abandon` so they stop waiting at once. ``None`` otherwise.
    """

    outcome: Outcome
    value: Any = None
    similarity: float | None = None
    key: str | None = None
    question: str | None = None
    created_at: float | None = None
    seconds: float = 0.0
    stale: bool = False
    tokens_saved: int = 0
    cost_saved_usd: float = 0.0
    guard: str | None = None
    lease: Any = field(default=None, repr=False, compare=False)

    @property
    def leads(self) -> bool:
        """This lookup made the caller the coalescing leader of its key: store the
        answer, or `CacheEngine.abandon` the result when the call fails."""
        return self.lease is not None

    @property
    def hit(self) -> bool:
        """True when the value is served (exact, semantic or promoted)."""
        return self.outcome in (Outcome.EXACT_HIT, Outcome.SEMANTIC_HIT, Outcome.PROMOTED)

    @property
    def layer(self) -> str | None:
        return {
            Outcome.EXACT_HIT: "exact",
            Outcome.SEMANTIC_HIT: "semantic",
            Outcome.PROMOTED: "semantic",
        }.get(self.outcome)
