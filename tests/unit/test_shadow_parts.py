"""Pure parts of shadow mode: outcomes, the ledger, judges, tenant policies."""

from __future__ import annotations

import asyncio
import json

import pytest

from semcache_core.config import build_config
from semcache_core.embedding import CallableEmbedder
from semcache_core.errors import ConfigurationError
from semcache_core.judges import (
    CallableJudge,
    EmbeddingJudge,
    TextEqualityJudge,
    as_judge,
    normalize_text,
)
from semcache_core.policy import Outcome, semantic_outcome
from semcache_core.shadow import ShadowLedger
from semcache_core.tenant_policy import (
    TenantPolicy,
    default_policy,
    effective_policy,
    make_policy,
    parse_stored,
)


@pytest.mark.parametrize(
    ("sim", "mode", "floor", "expected"),
    [
        (0.99, "live", None, Outcome.SEMANTIC_HIT),
        (0.85, "live", None, Outcome.MISS),
        (0.95, "live", 0.96, Outcome.MISS),  # the entry's own floor is stricter
        (0.97, "live", 0.96, Outcome.SEMANTIC_HIT),
        (0.99, "shadow", None, Outcome.PROMOTED),
        (0.98, "shadow", None, Outcome.PROMOTED),  # at the promotion threshold
        (0.95, "shadow", None, Outcome.SHADOW_HIT),
        (0.99, "shadow", 0.995, Outcome.SHADOW_HIT),  # floor blocks promotion
        (0.85, "shadow", None, Outcome.MISS),
        (0.99, "off", None, Outcome.MISS),
        (None, "live", None, Outcome.MISS),
    ],
)
def test_semantic_outcome(
    sim: float | None, mode: str, floor: float | None, expected: Outcome
) -> None:
    assert semantic_outcome(sim, mode, 0.9, 0.98, floor) == expected


def test_no_promotion_threshold_serves_nothing_in_shadow() -> None:
    assert semantic_outcome(1.0, "shadow", 0.9, None) == Outcome.SHADOW_HIT


def test_ledger_is_per_key_fifo_and_bounded() -> None:
    now = [0.0]
    ledger = ShadowLedger(max_items=3, max_age=10.0, clock=lambda: now[0])
    ledger.park("a", "k1", 0.9, "x", "q")
    ledger.park("a", "k2", 0.8, "y", "q")
    ledger.park("b", "k3", 0.7, "z", "q")
    first = ledger.take("a")
    assert first is not None and first.key == "k1"
    assert ledger.take("c") is None
    ledger.park("c", "k4", 0.6, "w", "q")
    ledger.park("d", "k5", 0.6, "w", "q")  # evicts the oldest key's candidate
    assert len(ledger) == 3 and ledger.dropped == 1
    now[0] = 11.0  # everything is stale now
    assert ledger.take("b") is None
    ledger.park("e", "k6", 0.5, "v", "q")  # parking sweeps stale entries
    assert len(ledger) == 1


def test_text_judge_normalizes() -> None:
    judge = TextEqualityJudge()
    assert normalize_text("  Yes,  REFUND!\n") == "yes refund"
    assert judge.agree("q", "Yes, refund!", "yes refund")
    assert not judge.agree("q", "Yes", "No")
    assert asyncio.run(judge.aagree("q", "ＡＢＣ", "abc"))  # full-width folds (NFKC)


def test_callable_judges_sync_and_async() -> None:
    sync = as_judge(lambda q, a, b: len(a) == len(b))
    assert isinstance(sync, CallableJudge)
    assert sync.agree("q", "ab", "cd") and not sync.agree("q", "a", "cd")

    async def llm_judge(question: str, candidate: str, fresh: str) -> bool:
        await asyncio.sleep(0)
        return candidate[0] == fresh[0]

    judge = as_judge(llm_judge)
    assert asyncio.run(judge.aagree("q", "apple", "avocado"))
    with pytest.raises(ConfigurationError, match="async"):
        judge.agree("q", "a", "b")
    with pytest.raises(ConfigurationError):
        as_judge(42)


def test_embedding_judge() -> None:
    vectors = {"cat": [1.0, 0.0], "kitten": [0.96, 0.28], "car": [0.0, 1.0]}
    judge = EmbeddingJudge(CallableEmbedder(lambda t: vectors[t]), min_similarity=0.9)
    assert judge.agree("q", "cat", "kitten") and not judge.agree("q", "cat", "car")
    assert asyncio.run(judge.aagree("q", "cat", "kitten"))
    with pytest.raises(ConfigurationError):
        EmbeddingJudge(CallableEmbedder(lambda t: [1.0]), min_similarity=1.5)


def test_policy_overrides_and_defaults() -> None:
    config = build_config(threshold=0.88, semantic="live", min_samples=50)
    assert default_policy(config).threshold == 0.88
    pol = TenantPolicy(semantic="shadow", promotion_threshold=0.97)
    assert pol.overrides() == {"semantic": "shadow", "promotion_threshold": 0.97}
    eff = effective_policy(config, parse_stored(pol.to_json()))
    assert (eff.semantic, eff.promotion_threshold, eff.threshold, eff.min_samples) == (
        "shadow",
        0.97,
        0.88,  # not overridden: the engine's default still applies
        50,
    )
    assert eff.overrides() == pol.overrides()


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 1.5},
        {"semantic": "maybe"},
        {"target_error": 0.0},
        {"min_samples": 0},
        {"promotion_threshold": -0.1},
        {"ttl": -1},
        {"treshold": 0.9},
    ],
)
def test_invalid_policies_say_what_to_fix(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="invalid tenant policy") as info:
        make_policy(**bad)
    assert next(iter(bad)) in str(info.value)


def test_stored_policy_must_be_known_fields() -> None:
    assert parse_stored(None) is None
    assert parse_stored(json.dumps({"semantic": "off", "updated_at": 1.0})) == {"semantic": "off"}
    with pytest.raises(ValueError):
        parse_stored(json.dumps({"bogus": 1}))
    with pytest.raises(ValueError):
        parse_stored("[1, 2]")
