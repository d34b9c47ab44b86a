"""Pure parts of shadow mode: outcomes, the ledger, judges, tenant policies."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from semcache_core.calibration import Calibration, CurvePoint
from semcache_core.calibrator import BackgroundCalibrator
from semcache_core.config import build_config
from semcache_core.core.promotion import promotion
from semcache_core.core.rules import Outcome, semantic_outcome
from semcache_core.embedding import CallableEmbedder
from semcache_core.errors import ConfigurationError
from semcache_core.judges import (
    MINILM_BAR,
    CallableJudge,
    EmbeddingJudge,
    TextEqualityJudge,
    as_judge,
    default_judge,
    measure_judge,
    normalize_text,
)
from semcache_core.shadow import ShadowLedger
from semcache_core.tenant_policy import (
    TenantPolicy,
    check_overrides,
    default_policy,
    effective_policy,
    make_policy,
    parse_stored,
)
from tests.rewording import PHRASINGS


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


def test_ledger_evicts_the_oldest_candidate_whatever_its_key() -> None:
    now = [0.0]
    ledger = ShadowLedger(max_items=3, max_age=10.0, clock=lambda: now[0])
    ledger.park("a", "k1", 0.9, "x", "q")
    ledger.park("b", "k2", 0.9, "x", "q")
    ledger.park("a", "k3", 0.9, "x", "q")  # a parked last, but k1 is still the oldest
    ledger.park("c", "k4", 0.9, "x", "q")
    assert ledger.dropped == 1 and len(ledger) == 3
    taken = [ledger.take(k) for k in ("a", "a", "b", "c")]
    assert [c.key if c else None for c in taken] == ["k3", None, "k2", "k4"]
    assert len(ledger) == 0 and ledger.dropped == 1


def test_ledger_ages_each_candidate_from_its_own_parking() -> None:
    now = [0.0]
    ledger = ShadowLedger(max_items=10, max_age=10.0, clock=lambda: now[0])
    ledger.park("a", "old", 0.9, "x", "q")
    now[0] = 5.0
    ledger.park("a", "young", 0.9, "x", "q")
    now[0] = 10.0  # old is exactly max_age: stale; young is 5 s old
    candidate = ledger.take("a")
    assert candidate is not None and candidate.key == "young" and candidate.parked_at == 5.0
    assert ledger.dropped == 1 and len(ledger) == 0


def test_ledger_of_no_room_holds_nothing() -> None:
    ledger = ShadowLedger(max_items=0)
    ledger.park("a", "k1", 0.9, "x", "q")
    assert ledger.take("a") is None and len(ledger) == 0 and ledger.dropped == 1


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


# -- the default judge, measured bars -----------------------------------------------------
def test_default_judge_is_the_measured_answer_judge_with_minilm_else_text() -> None:
    minilm_like = CallableEmbedder(
        lambda t: [1.0], model_id="sentence-transformers/all-MiniLM-L6-v2"
    )
    judge = default_judge(minilm_like)
    assert isinstance(judge, EmbeddingJudge)
    assert judge.min_similarity == MINILM_BAR == 0.80
    assert judge.false_disagreement == pytest.approx(0.049)
    assert judge.false_agreement == pytest.approx(0.023)
    # No evidence for another model's bar: the safe text judge.
    assert isinstance(
        default_judge(CallableEmbedder(lambda t: [1.0], model_id="other")), TextEqualityJudge
    )
    assert isinstance(default_judge(None), TextEqualityJudge)


def test_a_reworded_right_answer_agrees_with_the_default_judge(embeddings: Any) -> None:
    judge = default_judge(embeddings)
    right = PHRASINGS["cancel_subscription"]
    wrong = PHRASINGS["pause_subscription"]
    assert all(judge.agree("q", right[0], other) for other in right[1:])
    assert not any(judge.agree("q", right[0], other) for other in wrong)
    assert not TextEqualityJudge().agree("q", right[0], right[1])


def test_measure_judge_puts_the_bar_above_every_different_pair() -> None:
    vectors = {"a": [1.0, 0.0], "a2": [0.95, 0.31], "a3": [0.6, 0.8], "b": [0.8, 0.6]}
    emb = CallableEmbedder(lambda t: vectors[t], model_id="mine")
    judge = measure_judge(emb, same=[("a", "a2"), ("a", "a3")], different=[("a", "b")])
    assert judge.min_similarity == pytest.approx(0.81)  # just above cos(a, b) = 0.8
    assert judge.agree("q", "a", "a2") and not judge.agree("q", "a", "a3")
    assert 0.0 < judge.false_disagreement < 0.5 and 0.0 < judge.false_agreement < 0.5
    with pytest.raises(ConfigurationError):
        measure_judge(emb, same=[("a", "a3")], different=[("a", "a2")])
    with pytest.raises(ConfigurationError):
        measure_judge(emb, same=[], different=[("a", "b")])


# -- consistent policies ------------------------------------------------------------------
def test_promotion_threshold_below_threshold_is_refused_when_explicit() -> None:
    with pytest.raises(
        ConfigurationError, match=r"promotion_threshold 0\.9 is below threshold 0\.95"
    ):
        make_policy(threshold=0.95, promotion_threshold=0.9)
    with pytest.raises(ConfigurationError, match=r"promotion_threshold >= 0\.9"):
        build_config(threshold=0.9, promotion_threshold=0.85)
    config = build_config(threshold=0.9)
    with pytest.raises(ConfigurationError, match="below threshold"):
        check_overrides(config, {"promotion_threshold": 0.85})
    check_overrides(config, {"threshold": 0.99})  # the inherited 0.98 follows it up
    check_overrides(config, {"promotion_threshold": None})


def test_an_inherited_promotion_threshold_follows_the_threshold_up() -> None:
    config = build_config(threshold=0.99)  # the default promotion_threshold is 0.98
    assert default_policy(config).promotion_threshold == 0.99
    eff = effective_policy(build_config(), {"semantic": "shadow", "threshold": 0.995})
    assert (eff.threshold, eff.promotion_threshold) == (0.995, 0.995)
    # A base config keeps what was explicit apart from what was inherited.
    assert build_config(build_config(threshold=0.99), namespace="x").promotion_threshold == 0.98


# -- promotion decisions ------------------------------------------------------------------
def _cal(threshold: float | None, samples: int = 300) -> Calibration:
    return Calibration(
        threshold=threshold,
        served=200,
        wrong=1,
        observed_error=0.005,
        upper_bound=0.02,
        target_error=0.02,
        min_samples=200,
        confidence=0.95,
        samples=samples,
        curve=[CurvePoint(0.9, 200, 1, 0.005, 0.02)],
    )


def test_promotion_promotes_recalibrates_up_and_down_and_demotes() -> None:
    shadow = TenantPolicy(semantic="shadow", promotion_threshold=0.9, auto_promote=True)
    new, action = promotion(shadow, _cal(0.93)) or ({}, "")
    assert action == "promote" and new["semantic"] == "live" and new["threshold"] == 0.93
    assert new["promotion_threshold"] == 0.93  # never left below the threshold
    live = TenantPolicy(semantic="live", threshold=0.93, auto_promote=True)
    assert promotion(live, _cal(0.931)) == (
        {**live.overrides(), "threshold": 0.931},
        "recalibrate",
    )  # up: any amount
    assert promotion(live, _cal(0.928)) is None  # down: jitter ignored
    down = promotion(live, _cal(0.91))
    assert down is not None and down[1] == "recalibrate" and down[0]["threshold"] == 0.91
    assert promotion(live, _cal(None)) == (
        {**live.overrides(), "semantic": "shadow"},
        "demote",
    )
    assert promotion(live, _cal(None, samples=100)) is None  # too few to judge
    assert promotion(shadow, _cal(None)) is None


# -- the background calibrator ------------------------------------------------------------
def test_background_calibrator_runs_every_n_verdicts_on_its_own_thread() -> None:
    seen: list[tuple[str, str]] = []
    errors: list[Exception] = []

    def run(tenant: str) -> None:
        seen.append((tenant, threading.current_thread().name))
        if tenant == "boom":
            raise RuntimeError("redis down")

    cal = BackgroundCalibrator(run, errors.append, every=3)
    for _ in range(5):
        cal.note("acme")
    assert cal.drain(5.0)
    assert seen == [("acme", "semcache-calibrator")]  # once, at the third verdict
    cal.request("boom")
    cal.request("globex")
    assert cal.drain(5.0)
    assert [t for t, _ in seen] == ["acme", "boom", "globex"]  # a failure does not stop it
    assert len(errors) == 1 and cal.runs == 3
    thread = cal._thread
    cal.close()
    assert thread is not None and not thread.is_alive()
    cal.request("late")  # after close: nothing runs
    assert cal.drain(1.0) and cal.runs == 3
