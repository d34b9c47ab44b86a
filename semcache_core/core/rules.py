"""Pure decisions: which layer may answer, whether a candidate is close enough, how long
an entry lives. No I/O, no clocks: callers pass ``now``.
"""

from __future__ import annotations

from enum import Enum

from ..tenancy import _Unset

# Float32 cosine of a vector with itself comes out a hair below 1.0; without this slack,
# threshold=1.0 ("identical questions only") would never match anything.
SIMILARITY_EPSILON = 1e-6


class Outcome(str, Enum):
    """How a lookup ended."""

    EXACT_HIT = "exact_hit"
    SEMANTIC_HIT = "semantic_hit"
    PROMOTED = "promoted"  # shadow mode, candidate at or above promotion_threshold: served
    SHADOW_HIT = "shadow_hit"  # shadow mode, candidate at or above threshold: not served
    GUARDED = "guarded"  # a candidate near enough to serve, refused by the verifier
    MISS = "miss"
    BYPASS = "bypass"  # the cache was not consulted (breaker open, nothing enabled)
    ERROR = "error"  # Redis or the embedder failed; served as a miss


def resolve_ttl(request_ttl: float | _Unset | None, default_ttl: float | None) -> float | None:
    """The TTL an entry gets: the request's own if given, else the configured default."""
    if isinstance(request_ttl, _Unset):
        return default_ttl
    return request_ttl


def should_store(ttl: float | None) -> bool:
    """TTL 0 means "do not cache"."""
    return ttl is None or ttl > 0


def is_semantic_hit(similarity: float | None, threshold: float) -> bool:
    """Is a candidate at ``similarity`` close enough to serve?"""
    return similarity is not None and similarity + SIMILARITY_EPSILON >= threshold


def semantic_outcome(
    similarity: float | None,
    mode: str,
    threshold: float,
    promotion_threshold: float | None,
    entry_floor: float | None = None,
) -> Outcome:
    """What the nearest semantic candidate becomes under a tenant's policy.

    ``live``: a hit at or above ``threshold``. ``shadow``: served only at or above
    ``promotion_threshold`` (promoted); at or above ``threshold`` it is a shadow hit
    (measured, not served). An entry's own floor (raised by disagreeing verdicts) can
    only make serving stricter. ``off``: always a miss.
    """
    if similarity is None or mode == "off":
        return Outcome.MISS
    floor = entry_floor if entry_floor is not None else 0.0
    if mode == "live":
        return (
            Outcome.SEMANTIC_HIT
            if is_semantic_hit(similarity, max(threshold, floor))
            else Outcome.MISS
        )
    if promotion_threshold is not None and is_semantic_hit(
        similarity, max(promotion_threshold, floor)
    ):
        return Outcome.PROMOTED
    if is_semantic_hit(similarity, threshold):
        return Outcome.SHADOW_HIT
    return Outcome.MISS


def is_expired(expires_at: float | None, now: float) -> bool:
    """Redis removes expired keys lazily; a search may still see one for a moment."""
    return expires_at is not None and expires_at <= now


def sliding_expiry(ttl: float | None, sliding: bool, now: float) -> float | None:
    """The new ``expires_at`` after a hit, or ``None`` when the TTL does not slide."""
    if not sliding or ttl is None or ttl <= 0:
        return None
    return now + ttl
