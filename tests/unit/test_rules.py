"""Pure decisions: thresholds, TTL resolution, expiry."""

from __future__ import annotations

from semcache_core.core import rules as policy
from semcache_core.tenancy import UNSET


def test_threshold_edges_mean_what_they_say() -> None:
    assert policy.is_semantic_hit(0.0, 0.0)  # threshold 0: anything in scope is served
    assert policy.is_semantic_hit(-0.3, 0.0) is False
    assert policy.is_semantic_hit(0.9999995, 1.0)  # float32 self-similarity
    assert not policy.is_semantic_hit(0.999, 1.0)
    assert policy.is_semantic_hit(0.9, 0.9)
    assert not policy.is_semantic_hit(0.8999, 0.9)
    assert not policy.is_semantic_hit(None, 0.0)


def test_ttl_resolution() -> None:
    assert policy.resolve_ttl(UNSET, 60.0) == 60.0
    assert policy.resolve_ttl(None, 60.0) is None  # explicit "never expires" wins
    assert policy.resolve_ttl(0, 60.0) == 0  # explicit zero is not "fall back"
    assert policy.resolve_ttl(5.0, None) == 5.0
    assert policy.should_store(None) and policy.should_store(0.001)
    assert not policy.should_store(0)


def test_expiry_and_sliding() -> None:
    assert policy.is_expired(10.0, 10.0) and not policy.is_expired(10.0, 9.9)
    assert not policy.is_expired(None, 1e12)
    assert policy.sliding_expiry(5.0, True, 100.0) == 105.0
    assert policy.sliding_expiry(5.0, False, 100.0) is None
    assert policy.sliding_expiry(None, True, 100.0) is None
