"""Shadow mode, promotion, verdicts and calibration against the real embedded Redis.

Most tests use an "angle" embedder that places each question at an exact cosine
similarity to a stored one, so policy decisions can be checked at chosen similarities
(these tests are about the policy, not about embedding quality). The LangChain test uses
the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from langchain_core.globals import get_llm_cache, set_llm_cache

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine, Outcome, TenantPolicy, tenant
from semcache_core.embedding import CallableEmbedder
from semcache_core.errors import ConfigurationError
from semcache_core.request import tenant_digest
from semcache_demo.langchain_fakes import FakeSupportChatModel
from semcache_demo.workload import INTENTS
from tests.integration.drivers import DrivenEngine, Driver

DIMS = 16


def angle_embed(text: str) -> list[float]:
    """``"<anchor>"`` -> axis ``2a``; ``"<anchor>@<s>#<tag>"`` -> cosine ``s`` to it.

    The tag only makes texts distinct (so the exact layer stays out of the way).
    """
    anchor, _, rest = text.partition("@")
    a = int(anchor) % (DIMS // 2)
    vec = [0.0] * DIMS
    if not rest:
        vec[2 * a] = 1.0
        return vec
    s = float(rest.split("#")[0])
    vec[2 * a] = s
    vec[2 * a + 1] = math.sqrt(max(0.0, 1.0 - s * s))
    return vec


def accept_all(query: str, candidate: str) -> bool:
    """These tests are about thresholds and modes: the verifier (tested on its own in
    tests/unit/test_verify.py and on real prompts elsewhere) is told to agree."""
    return True


def angle_engine(
    make_engine: Callable[..., CacheEngine], driver: Driver, **kwargs: Any
) -> DrivenEngine:
    kwargs.setdefault("policy_refresh", 0.0)
    kwargs.setdefault("verifier", accept_all)
    return driver.make(make_engine, embedder=CallableEmbedder(angle_embed), dims=DIMS, **kwargs)


def ask(engine: DrivenEngine, question: str, answer: str, tenant_id: str = "acme") -> Any:
    """One request the way an adapter makes it: lookup, and on a miss store the answer.

    Only anchors (questions without ``@``) are written: the others are stored with TTL 0
    (judged, not cached), so every question's nearest entry is its anchor.
    """
    ttl = 0 if "@" in question else None
    req = engine.request(question, tenant=tenant_id, scope={"model": "m"}, ttl=ttl)
    result = engine.lookup(req)
    if not result.hit:
        engine.store(req, answer.encode(), text=answer)
    return result


def test_shadow_never_serves_below_the_promotion_threshold(
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
) -> None:
    engine = angle_engine(make_engine, driver)
    engine.set_policy("acme", semantic="shadow", threshold=0.80, promotion_threshold=0.95)
    ask(engine, "0", "stored answer")
    sims = [round(0.50 + i * 0.0025, 4) for i in range(200)]  # 0.50 .. 0.9975
    random.Random(3).shuffle(sims)
    for i, s in enumerate(sims):
        req = engine.request(f"0@{s}#{i}", tenant="acme", scope={"model": "m"})
        result = engine.lookup(req)
        assert result.similarity == pytest.approx(s, abs=1e-5)
        if s >= 0.95:
            assert result.outcome == Outcome.PROMOTED and result.hit
            assert result.value == b"stored answer"
        else:
            assert not result.hit and result.value is None, s
            assert result.outcome == (Outcome.SHADOW_HIT if s >= 0.80 else Outcome.MISS)
    stats = engine.stats("acme")["tenants"]["acme"]
    assert stats["promoted"] == sum(s >= 0.95 for s in sims)
    assert stats["shadow_hits"] == sum(0.80 <= s < 0.95 for s in sims)
    assert stats["semantic_hits"] == 0


def test_live_serves_at_threshold_and_off_never(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver, threshold=0.9)
    ask(engine, "1", "one")
    assert engine.lookup(engine.request("1@0.91#a", tenant="acme", scope={"model": "m"})).hit
    assert not engine.lookup(engine.request("1@0.89#b", tenant="acme", scope={"model": "m"})).hit
    engine.set_policy("acme", semantic="off")
    result = engine.lookup(engine.request("1@0.99#c", tenant="acme", scope={"model": "m"}))
    assert result.outcome == Outcome.MISS
    # The exact layer still answers with the semantic layer off, unless it is off too.
    assert engine.lookup(engine.request("1", tenant="acme", scope={"model": "m"})).hit
    engine.set_policy("acme", exact=False)
    assert not engine.lookup(engine.request("1", tenant="acme", scope={"model": "m"})).hit


def test_promotion_counter_moves_once_per_promoted_serve(
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
) -> None:
    engine = angle_engine(make_engine, driver)
    engine.set_policy("acme", semantic="shadow", promotion_threshold=0.97)
    ask(engine, "2", "two")
    served = 0
    for i in range(25):
        result = ask(engine, f"2@0.99#{i}", "two")
        served += result.outcome == Outcome.PROMOTED
        assert engine.stats("acme")["tenants"]["acme"]["promoted"] == served == i + 1
    ask(engine, "2@0.96#x", "two")  # a shadow hit: not promoted, not served
    ask(engine, "2", "two")  # an exact hit
    stats = engine.stats("acme")["tenants"]["acme"]
    assert (stats["promoted"], stats["shadow_hits"], stats["exact_hits"]) == (25, 1, 1)
    # Promoted hits are hits: they count in the hit rate, shadow hits do not.
    assert stats["hit_rate"] == pytest.approx(26 / stats["requests"])


def test_verdicts_record_agreement_and_raise_entry_floors(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver)
    engine.set_policy("acme", semantic="shadow", threshold=0.8, promotion_threshold=None)
    ask(engine, "3", "Refunds take 30 days.")
    ask(engine, "3@0.93#a", "refunds take 30 days")  # agrees (normalized text)
    ask(engine, "3@0.91#b", "Shipping is free.")  # disagrees
    ask(engine, "3@0.40#c", "anything")  # below the shadow floor: no verdict
    verdicts = engine.verdicts("acme")
    assert [(round(v.similarity, 3), v.agreed) for v in verdicts] == [(0.93, True), (0.91, False)]
    stats = engine.stats("acme")["tenants"]["acme"]
    assert (stats["verdicts"], stats["verdicts_agreed"]) == (2, 1)
    # One disagreement may be the judge's noise: the entry's floor stays where it was.
    candidate = verdicts[1].candidate
    assert candidate is not None
    assert raw_redis.hget(candidate, "min_sim") is None
    # A second one is evidence: the floor rises just above the lower of the two.
    ask(engine, "3@0.95#f", "Shipping is free.")
    assert float(raw_redis.hget(candidate, "min_sim") or 0) == pytest.approx(0.9101, abs=1e-4)
    engine.set_policy("acme", semantic="live", threshold=0.85)
    live = engine.lookup(engine.request("3@0.905#d", tenant="acme", scope={"model": "m"}))
    assert live.outcome == Outcome.MISS  # above the tenant threshold, below the entry's floor
    live = engine.lookup(engine.request("3@0.92#e", tenant="acme", scope={"model": "m"}))
    assert live.outcome == Outcome.SEMANTIC_HIT


def test_one_noisy_disagreement_never_blocks_an_entry_but_two_raise_its_floor(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    """Floors need ``floor_evidence`` disagreements; the floor sits above the
    ``floor_evidence``-th highest, so a lone disagreement at a high similarity (the
    judge calling a reworded right answer wrong) never blocks it there."""
    engine = angle_engine(make_engine, driver, floor_evidence=2)
    engine.set_policy("acme", semantic="shadow", threshold=0.8, promotion_threshold=None)
    ask(engine, "2", "Right.")
    ask(engine, "2@0.97#a", "A false disagreement.")
    (first,) = engine.verdicts("acme")
    assert first.candidate is not None and not first.agreed
    assert raw_redis.hget(first.candidate, "min_sim") is None
    ask(engine, "2@0.86#b", "Wrong.")
    ask(engine, "2@0.84#c", "Wrong again.")
    # Disagreements at 0.97, 0.86, 0.84: the second highest, 0.86, sets the floor.
    assert float(raw_redis.hget(first.candidate, "min_sim") or 0) == pytest.approx(
        0.8601, abs=1e-4
    )
    engine.set_policy("acme", semantic="live", threshold=0.8)
    hit = engine.lookup(engine.request("2@0.9#d", tenant="acme", scope={"model": "m"}))
    assert hit.outcome == Outcome.SEMANTIC_HIT  # 0.97's lone disagreement did not block it


def test_entry_floors_can_be_turned_off(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver, entry_floors=False)
    engine.set_policy("acme", semantic="shadow", threshold=0.8)
    ask(engine, "3", "a")
    ask(engine, "3@0.91#b", "b")
    (verdict,) = engine.verdicts("acme")
    assert not verdict.agreed and verdict.candidate is not None
    assert raw_redis.hget(verdict.candidate, "min_sim") is None


async def test_concurrent_async_requests_never_mix_candidates(
    make_engine: Callable[..., CacheEngine],
) -> None:
    """Async only: it is about tasks interleaving on one event loop between a lookup and
    its store. Patient timeouts: 120 tasks open their connections at once (to three
    masters on a cluster), and a connect that times out would lose a verdict, which is
    not what this test is about."""
    engine = make_engine(
        embedder=CallableEmbedder(angle_embed),
        dims=DIMS,
        policy_refresh=0.0,
        verifier=accept_all,
        connect_timeout=5.0,
        socket_timeout=2.0,
    )
    engine.set_policy("acme", semantic="shadow", threshold=0.5, promotion_threshold=None)
    for a in range(8):
        req = engine.request(str(a), tenant="acme", scope={"model": "m"})
        await engine.astore(req, f"answer {a}".encode())
    rng = random.Random(5)
    expected = []

    async def one(i: int) -> None:
        a = i % 8
        s = round(rng.uniform(0.6, 0.94), 4)
        agrees = i % 3 != 0
        expected.append((s, agrees))
        req = engine.request(f"{a}@{s}#{i}", tenant="acme", scope={"model": "m"}, ttl=0)
        result = await engine.alookup(req)
        assert result.outcome == Outcome.SHADOW_HIT
        await asyncio.sleep(rng.random() / 100)  # the LLM; others interleave here
        fresh = f"answer {a}" if agrees else f"something else {i}"
        await engine.astore(req, fresh.encode())

    await asyncio.gather(*(one(i) for i in range(120)))
    got = sorted((round(v.similarity, 4), v.agreed) for v in engine.verdicts("acme"))
    assert got == sorted(expected)


def test_verdicts_are_bounded_persistent_and_per_tenant(
    make_engine: Callable[..., CacheEngine], redis_url: str, namespace: str, driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver, verdict_limit=10)
    for t in ("acme", "globex"):
        engine.set_policy(t, semantic="shadow", threshold=0.5, promotion_threshold=None)
        ask(engine, "4", "x", tenant_id=t)
    for i in range(25):
        ask(engine, f"4@0.9#{i}", "x" if i % 2 else "y", tenant_id="acme")
    ask(engine, "4@0.7#g", "x", tenant_id="globex")
    assert len(engine.verdicts("acme")) == 10  # capped: the newest ten
    assert [v.agreed for v in engine.verdicts("acme")] == [i % 2 == 1 for i in range(15, 25)]
    # A new process (engine) reads the same verdicts; the other tenant's stay apart.
    other = driver(CacheEngine(redis_url, namespace=namespace, validate=False))
    try:
        assert len(other.verdicts("acme")) == 10
        (g,) = other.verdicts("globex")
        assert g.similarity == pytest.approx(0.7, abs=1e-5) and g.agreed
        assert other.verdicts("initech") == []
        assert other.clear_verdicts("acme") == 1
        assert other.verdicts("acme") == [] and len(other.verdicts("globex")) == 1
    finally:
        other.close()
    # Keys hold digests, never the raw tenant id.
    assert engine.layout.verdict_key(tenant_digest("globex")).endswith(tenant_digest("globex"))


def test_calibrate_and_promote_with_audit(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    now = 1_700_000_000.0
    engine = angle_engine(make_engine, driver, clock=lambda: now)
    engine.set_policy(
        "acme",
        TenantPolicy(
            semantic="shadow",
            threshold=0.99,
            promotion_threshold=None,
            target_error=0.05,
            min_samples=60,
        ),
    )
    ask(engine, "5", "five")
    rng = random.Random(11)
    for i in range(150):  # agree above 0.9, mostly disagree below
        s = round(rng.uniform(0.8, 0.999), 4)
        agrees = s >= 0.9 or rng.random() < 0.3
        ask(engine, f"5@{s}#{i}", "five" if agrees else f"other {i}")
    dry = engine.calibrate("acme")
    assert dry.threshold is not None and 0.88 < dry.threshold < 0.93
    assert dry.upper_bound <= 0.05 and dry.served >= 60
    assert engine.get_policy("acme").semantic == "shadow"  # a dry run changes nothing

    now += 60.0
    cal = engine.calibrate("acme", apply=True)
    pol = engine.get_policy("acme")
    assert (pol.semantic, pol.threshold) == ("live", cal.threshold)
    assert pol.target_error == 0.05  # other overrides kept
    record = engine.audit_log("acme")[0]
    assert record["action"] == "promote"
    assert record["old"]["semantic"] == "shadow" and record["new"]["semantic"] == "live"
    assert record["evidence"]["threshold"] == cal.threshold
    assert record["evidence"]["method"] == "clopper-pearson"
    assert record["evidence"]["served"] == cal.served
    assert record["at"] == now  # written by this calibration, at its time
    # Live now: a question above the calibrated threshold is served.
    served = ask(engine, "5@0.97#live", "unused")
    assert served.outcome == Outcome.SEMANTIC_HIT and served.value == b"five"
    # Applying again changes nothing and writes no new record.
    engine.calibrate("acme", apply=True)
    assert engine.audit_log("acme")[0]["id"] == record["id"]


def test_auto_promote_from_the_store_path(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    # No audit samples: with auto_promote, 2 % of live hits (audit_rate) are judged
    # instead of served, at random, which made the last lookup a shadow hit now and then.
    engine = angle_engine(make_engine, driver, calibrate_every=10, audit_rate=0.0)
    engine.set_policy(
        "acme",
        semantic="shadow",
        threshold=0.95,
        promotion_threshold=None,
        auto_promote=True,
        min_samples=30,
        target_error=0.1,
    )
    engine.store(engine.request("6", tenant="acme", scope={"model": "m"}), b"six")
    for i in range(30):
        req = engine.request(
            f"6@{0.85 + i * 0.004:.4f}#{i}", tenant="acme", scope={"model": "m"}, ttl=0
        )
        result = engine.lookup(req)
        assert result.outcome in (Outcome.SHADOW_HIT, Outcome.MISS)
        engine.store(req, b"six")
    assert engine.drain_calibration(10.0)  # the engine's own thread calibrates
    pol = engine.get_policy("acme")
    assert pol.semantic == "live" and pol.threshold < 0.95
    assert engine.audit_log("acme")[0]["action"] == "promote"
    req = engine.request("6@0.97#live", tenant="acme", scope={"model": "m"}, ttl=0)
    assert engine.lookup(req).outcome == Outcome.SEMANTIC_HIT
    assert engine.stats("acme")["tenants"]["acme"]["semantic_hits"] >= 1


def test_calibration_never_runs_inside_a_users_call(
    make_engine: Callable[..., CacheEngine], monkeypatch: pytest.MonkeyPatch, driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver, calibrate_every=5)
    engine.set_policy(
        "acme", semantic="shadow", threshold=0.8, promotion_threshold=None, auto_promote=True
    )
    threads: list[str] = []
    real = engine.calibrate

    def spy(tenant: str, *, apply: bool | None = None) -> Any:
        threads.append(threading.current_thread().name)
        return real(tenant, apply=apply)

    monkeypatch.setattr(engine.engine, "calibrate", spy)
    ask(engine, "1", "one")
    for i in range(20):
        ask(engine, f"1@0.9#{i}", "one")
    assert engine.drain_calibration(10.0)
    assert threads == ["semcache-calibrator"] * 4  # every 5 verdicts, never the caller's
    engine.close()
    calibrator = engine.engine._state.calibrator
    assert calibrator is not None and calibrator._thread is not None
    assert not calibrator._thread.is_alive()  # close() (or aclose()) stops it


def test_auto_promote_keeps_learning_after_promotion(
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
) -> None:
    """Live with auto_promote: misses below the threshold and an audit sample of hits
    above it are judged, and the background calibration moves the threshold down on
    new agreements and up on new disagreements, audited as ``recalibrate``."""
    engine = angle_engine(make_engine, driver, calibrate_every=1000, audit_rate=1.0)
    engine.set_policy(
        "acme",
        semantic="shadow",
        threshold=0.99,
        promotion_threshold=None,
        auto_promote=True,
        min_samples=50,
        target_error=0.1,
    )
    ask(engine, "4", "four")
    for i in range(60):  # agree from 0.93 up
        ask(engine, f"4@{0.93 + i * 0.001:.4f}#a{i}", "four")
    engine.calibrate("acme")
    first = engine.get_policy("acme")
    assert first.semantic == "live" and 0.92 < first.threshold < 0.94
    # Down: agreements below the live threshold (misses, judged in live mode).
    for i in range(60):
        ask(engine, f"4@{0.86 + i * 0.001:.4f}#b{i}", "four")
    engine.calibrate("acme")
    lower = engine.get_policy("acme")
    assert lower.threshold < first.threshold - 0.05
    # Up: audited hits above the threshold that turn out wrong.
    for i in range(40):
        result = ask(engine, f"4@{0.87 + i * 0.0005:.4f}#c{i}", f"not four {i}")
        assert result.outcome == Outcome.SHADOW_HIT  # audit_rate=1: judged, not served
    engine.calibrate("acme")
    higher = engine.get_policy("acme")
    assert higher.semantic == "live" and higher.threshold > lower.threshold
    actions = [r["action"] for r in engine.audit_log("acme")]
    assert actions[:3] == ["recalibrate", "recalibrate", "promote"]


def test_set_policy_refuses_a_promotion_threshold_below_the_threshold(
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
) -> None:
    engine = angle_engine(make_engine, driver, threshold=0.9)
    with pytest.raises(ConfigurationError, match="below threshold"):
        engine.set_policy("acme", semantic="shadow", promotion_threshold=0.85)
    with pytest.raises(ConfigurationError, match="below threshold"):
        engine.set_policy("acme", threshold=0.97, promotion_threshold=0.95)
    # Inherited, it follows the threshold: this shadow tenant serves only from 0.99.
    pol = engine.set_policy("acme", semantic="shadow", threshold=0.99)
    assert pol.promotion_threshold == 0.99
    ask(engine, "5", "five")
    assert not ask(engine, "5@0.985#x", "five").hit  # the default 0.98 would have served
    assert ask(engine, "5@0.995#y", "five").outcome == Outcome.PROMOTED


def test_policy_change_reaches_another_process_once_its_copy_is_due(
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
) -> None:
    writer = angle_engine(make_engine, driver)
    due = angle_engine(make_engine, driver, policy_refresh=0.0)  # re-reads every call
    cached = angle_engine(make_engine, driver, policy_refresh=3600.0)  # keeps it an hour
    ask(writer, "7", "seven")
    for reader in (due, cached):
        assert ask(reader, "7@0.97#a", "seven").outcome == Outcome.SEMANTIC_HIT
    writer.set_policy("acme", semantic="shadow", promotion_threshold=None)
    assert ask(due, "7@0.97#b", "seven").outcome == Outcome.SHADOW_HIT  # the next call
    assert ask(cached, "7@0.97#b", "seven").outcome == Outcome.SEMANTIC_HIT  # not yet due
    writer.reset_policy("acme")
    assert [r["action"] for r in writer.audit_log("acme")[:2]] == ["reset", "set"]


def test_bad_and_corrupt_policies(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver)
    with pytest.raises(ConfigurationError, match="threshold"):
        engine.set_policy("acme", threshold=1.5)
    with pytest.raises(ConfigurationError, match="semantic"):
        engine.set_policy("acme", semantic="sometimes")
    with pytest.raises(ConfigurationError, match="treshold"):
        engine.set_policy("acme", treshold=0.9)
    # A corrupt stored policy never breaks a lookup: the defaults apply, the error counts.
    ask(engine, "0", "zero", tenant_id="globex")
    raw_redis.hset(engine.layout.policy_key, "globex", b"{not json")
    result = ask(engine, "0@0.95#x", "zero", tenant_id="globex")
    assert result.outcome == Outcome.SEMANTIC_HIT
    assert engine.stats()["errors"].get("policy", 0) >= 1


def test_policies_list_and_tenant_ids_are_data(
    make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver)
    hostile = "a{b}|c@d*:e,f\"'\\ \x00 ü"
    engine.set_policy(hostile, semantic="shadow")
    engine.set_policy("acme", threshold=0.93)
    policies = engine.policies()
    assert set(policies) == {hostile, "acme"}
    assert policies[hostile].semantic == "shadow" and policies["acme"].threshold == 0.93
    assert policies["acme"].overrides() == {"threshold": 0.93}


def test_langchain_shadow_flow_with_real_embeddings(
    redis_url: str, namespace: str, embeddings: Any
) -> None:
    """Through `set_llm_cache`: paraphrases are shadowed, the model answers, verdicts are
    recorded (agreeing: same intent), and a served promoted hit says so."""
    cache = SemanticCache(
        redis_url=redis_url, embeddings=embeddings, namespace=namespace, policy_refresh=0.0
    )
    model = FakeSupportChatModel(model_name="support-small", latency=0.0)
    cache.engine.set_policy("acme", semantic="shadow", threshold=0.6, promotion_threshold=0.99)
    before = get_llm_cache()
    set_llm_cache(cache)
    try:
        with tenant("acme"):
            for intent in INTENTS[:6]:
                for question in intent.questions:
                    model.invoke(question)
            asked = sum(len(i.questions) for i in INTENTS[:6])
            assert model.calls == asked  # shadow mode: the model answered every one
            repeat = model.invoke(INTENTS[0].questions[0])  # exact hits are still served
            assert repeat.response_metadata["semcache"]["layer"] == "exact"
            # A near-identical question (0.994 with MiniLM) is promoted, and says so.
            promoted = model.invoke(INTENTS[0].questions[0].rstrip("?"))
            marker = promoted.response_metadata["semcache"]
            assert (marker["layer"], marker["outcome"]) == ("semantic", "promoted")
            assert marker["similarity"] >= 0.99
            assert model.calls == asked
    finally:
        set_llm_cache(before)
    verdicts = cache.engine.verdicts("acme")
    stats = cache.engine.stats("acme")["tenants"]["acme"]
    assert stats["verdicts"] == len(verdicts) > 0
    assert stats["semantic_hits"] == 0 and stats["promoted"] == 1
    # Paraphrases of one intent get that intent's answer, so their verdicts agree.
    assert sum(v.agreed for v in verdicts) >= len(verdicts) // 2
    cache.engine.drop_index()
    cache.engine.close()


def test_drop_namespace_removes_policies_verdicts_audit_and_totals(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, namespace: str, driver: Driver
) -> None:
    engine = angle_engine(make_engine, driver)
    engine.set_policy("acme", semantic="shadow", threshold=0.5, promotion_threshold=None)
    ask(engine, "0", "a")
    ask(engine, "0@0.9#x", "b")
    engine.close()  # writes the counters
    engine = angle_engine(make_engine, driver)
    assert engine.verdicts("acme") and engine.policies() and engine.audit_log()
    assert engine.stats()["totals"]["acme"]["requests"] == 2
    assert engine.drop_namespace() == 1
    assert not engine.verdicts("acme") and not engine.policies() and not engine.audit_log()
    assert [k for k in raw_redis.scan_iter(match=f"*{namespace}*")] == []
