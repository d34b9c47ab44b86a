"""The pure decisions of a lookup (`semcache_core.core.read`), without Redis.

Each test pins one decision the drivers apply: exact before semantic, the TTL slide,
corrupt means delete while a failing decoder keeps the entry, a foreign entry is never
served, the verifier's verdicts, audit samples, guarded candidates and what is parked.
"""

from __future__ import annotations

from typing import Any

import pytest

from semcache_core.core import read
from semcache_core.core.rules import Outcome
from semcache_core.core.verify import Verification
from semcache_core.entry import CorruptEntry, DecodeFailed
from semcache_core.errors import SerializationError
from semcache_core.request import CacheRequest

NOW = 1_000_000.0


def _request(question: str = "what is the refund policy?") -> CacheRequest:
    return CacheRequest.build(tenant="acme", namespace="ns", prompt=question, question=question)


def _fields(request: CacheRequest, **over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": b"1",
        "partition": request.partition.encode(),
        "payload": b"30 days",
        "codec": b"bytes",
        "created_at": str(NOW - 10).encode(),
        "expires_at": str(NOW + 50).encode(),
        "ttl": b"60",
        "question": (request.question or "").encode(),
    }
    fields.update(over)
    return {k: v for k, v in fields.items() if v is not None}


def _found(
    similarity: float, question: str = "what is the refund policy?", **over: Any
) -> read.Found:
    req = _request(question)
    fields = _fields(req, **over)
    found = read.accept(req, f"k:{similarity}", fields, _raw, now=NOW, distance=1 - similarity)
    assert found is not None
    return found


def _raw(payload: bytes, codec: str) -> bytes:
    return payload


POL = read.SemanticPolicy(
    mode="live",
    threshold=0.9,
    promotion_threshold=None,
    auto_promote=False,
    shadow_floor=0.5,
    audit_rate=0.0,
    sliding=False,
)


# -- accept: what a stored entry is ---------------------------------------------------------
def test_accept_decodes_an_entry_of_this_partition() -> None:
    req = _request()
    found = read.accept(req, "k", _fields(req), _raw, now=NOW)
    assert found is not None and found.value == b"30 days" and found.entry.ttl == 60.0


def test_an_expired_entry_is_not_found_but_a_stale_lookup_may_use_the_grace() -> None:
    req = _request()
    fields = _fields(req, expires_at=str(NOW - 1).encode())
    assert read.accept(req, "k", fields, _raw, now=NOW) is None
    assert read.accept(req, "k", fields, _raw, now=NOW, grace=5.0) is not None


def test_an_entry_of_another_partition_is_refused() -> None:
    req, other = _request(), CacheRequest.build(tenant="globex", namespace="ns", prompt="x")
    with pytest.raises(read.ForeignEntry):
        read.accept(req, "k", _fields(other), _raw, now=NOW)


def test_unreadable_fields_and_unreadable_payloads_are_corrupt() -> None:
    req = _request()
    with pytest.raises(CorruptEntry):
        read.accept(req, "k", _fields(req, payload=None), _raw, now=NOW)
    with pytest.raises(CorruptEntry):
        read.accept(req, "k", _fields(req, created_at=b"soon"), _raw, now=NOW)

    def not_ours(payload: bytes, codec: str) -> Any:
        raise SerializationError("not JSON")

    with pytest.raises(CorruptEntry):
        read.accept(req, "k", _fields(req), not_ours, now=NOW)


def test_a_decoder_failing_on_readable_data_is_not_corruption() -> None:
    req = _request()

    def framework_broke(payload: bytes, codec: str) -> Any:
        raise TypeError("AIMessage() got an unexpected keyword argument")

    with pytest.raises(DecodeFailed) as info:
        read.accept(req, "k", _fields(req), framework_broke, now=NOW)
    assert not isinstance(info.value, CorruptEntry)


# -- exact hits and the TTL slide ---------------------------------------------------------
def test_an_exact_hit_slides_only_when_sliding_and_not_stale() -> None:
    found = _found(1.0)
    hit = read.exact_hit(found, stale=False, sliding=True, now=NOW)
    assert hit.outcome is Outcome.EXACT_HIT and hit.served
    assert hit.touch == read.Touch(found.entry.key, 60.0, NOW + 60.0)
    assert read.exact_hit(found, stale=False, sliding=False, now=NOW).touch is None
    assert read.exact_hit(found, stale=True, sliding=True, now=NOW).touch is None


def test_no_slide_for_an_entry_without_ttl() -> None:
    found = _found(1.0, ttl=None, expires_at=None)
    assert read.slide(found.entry, sliding=True, now=NOW) is None


# -- semantic ------------------------------------------------------------------------------
def test_candidates_below_the_threshold_are_not_verified() -> None:
    near, far = _found(0.95), _found(0.85)
    assert read.to_verify(POL, [near, far]) == [(near, Outcome.SEMANTIC_HIT)]


def test_the_first_accepted_candidate_is_served_and_slid() -> None:
    a, b = _found(0.97), _found(0.95)
    pol = read.SemanticPolicy(**{**POL.__dict__, "sliding": True})
    checked = [
        (a, Outcome.SEMANTIC_HIT, Verification(False, "number")),
        (b, Outcome.SEMANTIC_HIT, Verification(True)),
    ]
    d = read.semantic(pol, [a, b], checked, stale=False, audit_draw=0.5, now=NOW)
    assert d.outcome is Outcome.SEMANTIC_HIT and d.found is b and d.touch is not None
    assert d.park is None


def test_a_refused_candidate_makes_the_lookup_guarded_and_is_parked_as_guarded() -> None:
    a = _found(0.97)
    pol = read.SemanticPolicy(**{**POL.__dict__, "auto_promote": True})
    checked = [(a, Outcome.SEMANTIC_HIT, Verification(False, "negation"))]
    d = read.semantic(pol, [a], checked, stale=False, audit_draw=0.5, now=NOW)
    assert d.outcome is Outcome.GUARDED and not d.served and d.found is None
    assert d.guard == "negation" and d.guarded_key == a.entry.key
    assert d.park == read.Park(a, a.entry.similarity or 0.0, guarded=True)
    stale = read.semantic(pol, [a], checked, stale=True, audit_draw=0.5, now=NOW)
    assert stale.outcome is Outcome.GUARDED and stale.park is None  # a stale read learns nothing


def test_an_audit_sample_is_judged_not_served() -> None:
    a = _found(0.97)
    pol = read.SemanticPolicy(**{**POL.__dict__, "auto_promote": True, "audit_rate": 0.1})
    checked = [(a, Outcome.SEMANTIC_HIT, Verification(True))]
    drawn = read.semantic(pol, [a], checked, stale=False, audit_draw=0.05, now=NOW)
    assert drawn.outcome is Outcome.SHADOW_HIT and not drawn.served and drawn.park is not None
    kept = read.semantic(pol, [a], checked, stale=False, audit_draw=0.5, now=NOW)
    assert kept.outcome is Outcome.SEMANTIC_HIT


def test_shadow_mode_measures_and_parks_promotion_serves() -> None:
    a = _found(0.93)
    shadow = read.SemanticPolicy(**{**POL.__dict__, "mode": "shadow"})
    checked = [(a, Outcome.SHADOW_HIT, Verification(True))]
    d = read.semantic(shadow, [a], checked, stale=False, audit_draw=0.5, now=NOW)
    assert d.outcome is Outcome.SHADOW_HIT and d.found is a and not d.served and d.park
    promoting = read.SemanticPolicy(**{**shadow.__dict__, "promotion_threshold": 0.92})
    assert read.to_verify(promoting, [a]) == [(a, Outcome.PROMOTED)]
    d = read.semantic(
        promoting,
        [a],
        [(a, Outcome.PROMOTED, Verification(True))],
        stale=False,
        audit_draw=0.5,
        now=NOW,
    )
    assert d.outcome is Outcome.PROMOTED and d.served


def test_no_candidate_near_enough_is_a_measured_miss() -> None:
    far = _found(0.6)
    shadow = read.SemanticPolicy(**{**POL.__dict__, "mode": "shadow"})
    d = read.semantic(shadow, [far], [], stale=False, audit_draw=0.5, now=NOW)
    assert d.outcome is Outcome.MISS and d.similarity == pytest.approx(0.6) and d.park
    below_floor = read.semantic(shadow, [_found(0.4)], [], stale=False, audit_draw=0.5, now=NOW)
    assert below_floor.park is None
    assert read.semantic(POL, [far], [], stale=False, audit_draw=0.5, now=NOW).park is None
    assert read.semantic(POL, [], [], stale=False, audit_draw=0.5, now=NOW) == read.ReadDecision(
        Outcome.MISS
    )


def test_an_entry_floor_makes_serving_stricter() -> None:
    raised = _found(0.95, min_sim=b"0.96")
    assert read.to_verify(POL, [raised]) == []


# -- prechecks -----------------------------------------------------------------------------
def test_threshold_one_means_identical_questions_only() -> None:
    pol = read.SemanticPolicy(**{**POL.__dict__, "threshold": 1.0})
    same = read.precheck(pol, Outcome.SEMANTIC_HIT, "reset  my password", "reset my password")
    assert same == Verification(True)
    other = read.precheck(pol, Outcome.SEMANTIC_HIT, "reset my password", "reset my pin")
    assert other == Verification(False, "identical_only")
    assert read.precheck(POL, Outcome.SEMANTIC_HIT, "a", "b") is None  # the verifier decides
    assert read.precheck(POL, Outcome.SEMANTIC_HIT, "a", None) == Verification(
        False, "no_question"
    )
