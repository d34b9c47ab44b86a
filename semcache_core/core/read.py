"""What a read means: the pure decisions of a lookup, and the actions a driver applies.

A driver reads (an exact entry, then semantic candidates), calls these functions, and
applies what they return: serve or not, `Touch` the entry (sliding TTL), `Park` a
candidate for its shadow verdict, unlink a corrupt entry. Nothing here does I/O or reads
a clock; ``now`` is passed in. Verification itself is in `semcache_core.core.verify`;
this module decides what a verdict means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..entry import CorruptEntry, DecodeFailed, StoredEntry, parse_entry
from ..errors import SerializationError
from ..request import CacheRequest
from .rules import SIMILARITY_EPSILON, Outcome, is_expired, semantic_outcome, sliding_expiry
from .verify import Verification

Decoder = Callable[[bytes, str], Any]
SERVED = (Outcome.EXACT_HIT, Outcome.SEMANTIC_HIT, Outcome.PROMOTED)


class ForeignEntry(Exception):
    """An entry of another partition came back (the pre-filter makes it impossible)."""


@dataclass(frozen=True)
class Found:
    """A stored entry that is this request's, unexpired, with its decoded value."""

    entry: StoredEntry
    value: Any


@dataclass(frozen=True)
class Touch:
    """Slide an entry's TTL: its new ``expires_at`` after a hit."""

    key: str
    ttl: float
    expires_at: float


@dataclass(frozen=True)
class Park:
    """Keep a candidate that was not served, to judge it against the fresh answer."""

    found: Found
    similarity: float
    guarded: bool = False


@dataclass(frozen=True)
class ReadDecision:
    """How a lookup ends and what the driver must still do."""

    outcome: Outcome
    found: Found | None = None  # the entry shown in the result (served or shadowed)
    similarity: float | None = None
    touch: Touch | None = None
    park: Park | None = None
    guard: str | None = None
    guarded_key: str | None = None

    @property
    def served(self) -> bool:
        return self.outcome in SERVED


def accept(
    request: CacheRequest,
    key: str,
    fields: Mapping[str, Any],
    decode: Decoder,
    *,
    now: float,
    distance: Any = None,
    grace: float = 0.0,
) -> Found | None:
    """Parse and decode a stored entry; ``None`` when it has expired (past ``grace``).

    Raises:
        CorruptEntry: the stored fields or the payload cannot be read as data (the
            driver deletes it).
        DecodeFailed: the decoder failed on readable data (a framework error): the
            lookup is an error and the entry is kept.
        ForeignEntry: the entry belongs to another partition: never served.
    """
    entry = parse_entry(key, fields, distance)
    if entry.partition != request.partition:
        raise ForeignEntry(key)
    if entry.expires_at is not None and is_expired(entry.expires_at + grace, now):
        return None
    try:
        value = decode(entry.payload, entry.codec)
    except (SerializationError, CorruptEntry) as exc:
        raise CorruptEntry(f"payload did not decode: {exc}") from exc
    except Exception as exc:
        # Not from exc: a pydantic error quotes its input, the cached answer.
        raise DecodeFailed(key, entry.codec, exc).with_traceback(exc.__traceback__) from None
    return Found(entry, value)


# Decoders whose values an L1 copy may keep and hand to every later hit on it: their
# values are immutable, or the caller copies what it serves (see `share_decoded`).
_SHARED_DECODERS: set[Decoder] = set()


def share_decoded(decode: Decoder) -> Decoder:
    """Mark ``decode`` as one whose values may be decoded once and shared: the L1 tier
    keeps the decoded value with its copy of the entry, and a repeat hit costs no parse
    and no decode. Only for values nobody mutates (bytes, str), or that the caller
    copies before serving (the LangChain adapter does). Returns ``decode``."""
    _SHARED_DECODERS.add(decode)
    return decode


def shares_decoded(decode: Decoder) -> bool:
    """Whether `share_decoded` marked ``decode``."""
    return decode in _SHARED_DECODERS


def reuse(request: CacheRequest, found: Found, *, now: float, grace: float = 0.0) -> Found | None:
    """A value decoded earlier from an L1 copy, if it still serves ``request``: checked
    as `accept` checks a read (its partition, its expiry), without parsing or decoding
    again. ``None``: not this request's, or expired (the caller then reads as usual)."""
    entry = found.entry
    if entry.partition != request.partition:
        return None
    if entry.expires_at is not None and is_expired(entry.expires_at + grace, now):
        return None
    return found


def slide(entry: StoredEntry, *, sliding: bool, now: float) -> Touch | None:
    """The TTL slide a hit on ``entry`` earns, if the TTL slides."""
    expires = sliding_expiry(entry.ttl, sliding, now)
    if expires is None or entry.ttl is None:
        return None
    return Touch(entry.key, entry.ttl, expires)


def exact_hit(found: Found, *, stale: bool, sliding: bool, now: float) -> ReadDecision:
    """An exact entry was found: served, its TTL slid (not by a stale lookup)."""
    touch = None if stale else slide(found.entry, sliding=sliding, now=now)
    return ReadDecision(Outcome.EXACT_HIT, found, 1.0, touch=touch)


@dataclass(frozen=True)
class SemanticPolicy:
    """What of a tenant's policy the semantic decision reads."""

    mode: str  # off | shadow | live
    threshold: float
    promotion_threshold: float | None
    auto_promote: bool
    shadow_floor: float
    audit_rate: float
    sliding: bool

    @property
    def learning(self) -> bool:
        """Keep unserved candidates for verdicts: in shadow mode, and in live mode with
        ``auto_promote`` (so calibration keeps learning after promotion)."""
        return self.mode == "shadow" or (self.mode == "live" and self.auto_promote)


def candidate_outcome(pol: SemanticPolicy, entry: StoredEntry) -> Outcome:
    """What a candidate would become if the verifier agrees."""
    return semantic_outcome(
        entry.similarity, pol.mode, pol.threshold, pol.promotion_threshold, entry.min_similarity
    )


def to_verify(pol: SemanticPolicy, candidates: Sequence[Found]) -> list[tuple[Found, Outcome]]:
    """The candidates near enough to serve (nearest first), each with its outcome: the
    driver verifies them in order and stops at the first the verifier accepts."""
    out: list[tuple[Found, Outcome]] = []
    for found in candidates:
        outcome = candidate_outcome(pol, found.entry)
        if outcome != Outcome.MISS:
            out.append((found, outcome))
    return out


def relevant_similarity(pol: SemanticPolicy) -> float:
    """The lowest similarity at which a candidate can change the decision: served or
    shadowed at or above the thresholds, parked for a verdict at or above the shadow
    floor while learning. A farther candidate is a miss whatever its fields say (an
    entry's own floor only raises its bar), so a lookup needs only its similarity."""
    low = pol.threshold
    if pol.promotion_threshold is not None:
        low = min(low, pol.promotion_threshold)
    if pol.learning:
        low = min(low, pol.shadow_floor)
    return low


def precheck(
    pol: SemanticPolicy, outcome: Outcome, query: str | None, cached: str | None
) -> Verification | None:
    """The verdict when no verifier needs to run, else ``None``."""
    if not cached or query is None:
        return Verification(False, "no_question")
    limit = pol.threshold
    if outcome == Outcome.PROMOTED and pol.promotion_threshold is not None:
        limit = pol.promotion_threshold
    if limit + SIMILARITY_EPSILON >= 1.0:
        # threshold=1.0 means identical questions only, whatever the vectors say.
        same = " ".join(query.split()) == " ".join(cached.split())
        return Verification(True) if same else Verification(False, "identical_only")
    return None


def _park(pol: SemanticPolicy, found: Found, stale: bool, guarded: bool = False) -> Park | None:
    sim = found.entry.similarity
    if stale or sim is None or not pol.learning or sim < pol.shadow_floor:
        return None
    return Park(found, sim, guarded)


def semantic(
    pol: SemanticPolicy,
    candidates: Sequence[Found],
    checked: Sequence[tuple[Found, Outcome, Verification]],
    *,
    stale: bool,
    audit_draw: float,
    now: float,
    nearest: float | None = None,
) -> ReadDecision:
    """How the semantic layer ends, given the candidates and the verdicts on the first
    of `to_verify`'s list (up to and including the first accepted one). ``nearest``:
    the similarity of the nearest candidate read without its fields (farther than
    `relevant_similarity`), which a miss without candidates records.

    A live hit drawn as an audit sample (``audit_draw < audit_rate`` with
    ``auto_promote``) is judged, not served. A candidate the verifier refused makes the
    lookup ``guarded`` (parked as a guarded verdict, which calibration leaves out).
    Otherwise the nearest candidate is a miss, still measured and parked for a verdict.
    """
    refused: tuple[Found, Verification] | None = None
    for found, outcome, check in checked:
        if not check.ok:
            refused = refused or (found, check)
            continue
        if (
            outcome == Outcome.SEMANTIC_HIT
            and pol.auto_promote
            and not stale
            and audit_draw < pol.audit_rate
        ):
            outcome = Outcome.SHADOW_HIT  # an audit sample: judged, not served
        sim = found.entry.similarity
        if outcome in SERVED:
            touch = None if stale else slide(found.entry, sliding=pol.sliding, now=now)
            return ReadDecision(outcome, found, sim, touch=touch)
        shown = found if outcome == Outcome.SHADOW_HIT else None
        return ReadDecision(outcome, shown, sim, park=_park(pol, found, stale))
    if refused is not None:
        found, check = refused
        return ReadDecision(
            Outcome.GUARDED,
            similarity=found.entry.similarity,
            park=_park(pol, found, stale, guarded=True),
            guard=check.reason or "verifier",
            guarded_key=found.entry.key,
        )
    if not candidates:
        return ReadDecision(Outcome.MISS, similarity=nearest)
    first = candidates[0]
    return ReadDecision(
        Outcome.MISS, similarity=first.entry.similarity, park=_park(pol, first, stale)
    )
