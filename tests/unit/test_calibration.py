"""Calibration maths: the Clopper-Pearson bound against scipy, and the threshold choice."""

from __future__ import annotations

import itertools
import random

import pytest
from scipy.stats import beta, binom

from semcache_core.calibration import (
    Verdict,
    binomial_cdf,
    calibrate,
    clopper_pearson_lower,
    clopper_pearson_upper,
    error_curve,
    noise_credit,
    observed_limit,
    true_error_bound,
    within_target,
)

CASES = [(0, 1), (0, 10), (1, 10), (5, 200), (20, 1000), (3, 50), (100, 10_000), (999, 1000)]


@pytest.mark.parametrize(("wrong", "n"), CASES)
def test_upper_bound_matches_the_beta_quantile(wrong: int, n: int) -> None:
    expected = beta.ppf(0.95, wrong + 1, n - wrong)
    assert clopper_pearson_upper(wrong, n, 0.95) == pytest.approx(expected, rel=1e-8, abs=1e-12)
    assert clopper_pearson_upper(wrong, n, 0.99) == pytest.approx(
        beta.ppf(0.99, wrong + 1, n - wrong), rel=1e-8, abs=1e-12
    )


@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.1), (3, 50, 0.02), (40, 1000, 0.05)])
def test_binomial_cdf_matches_scipy(k: int, n: int, p: float) -> None:
    assert binomial_cdf(k, n, p) == pytest.approx(binom.cdf(k, n, p), rel=1e-9)


def test_edge_cases() -> None:
    assert clopper_pearson_upper(0, 0) == 1.0
    assert clopper_pearson_upper(7, 7) == 1.0
    assert binomial_cdf(-1, 5, 0.5) == 0.0 and binomial_cdf(5, 5, 0.5) == 1.0
    assert not within_target(0, 0, 0.5, 0.95)
    # 0 wrong of n: the bound is 1 - 0.05 ** (1 / n); below 2 % from n = 149 on.
    assert not within_target(0, 148, 0.02, 0.95) and within_target(0, 149, 0.02, 0.95)


def _verdicts(pairs: list[tuple[float, bool]]) -> list[Verdict]:
    return [Verdict(similarity=s, agreed=a) for s, a in pairs]


def test_picks_the_lowest_threshold_whose_bound_holds() -> None:
    # 300 agreeing verdicts at 0.95..0.92, then only disagreements below 0.90.
    pairs = [(0.95 - i * 0.0001, True) for i in range(300)]
    pairs += [(0.89 - i * 0.0001, False) for i in range(100)]
    cal = calibrate(_verdicts(pairs), target_error=0.02, min_samples=150)
    # One wrong serve in 301 keeps the bound (1.57 %) under 2 %; two in 302 do not.
    assert clopper_pearson_upper(1, 301) <= 0.02 < clopper_pearson_upper(2, 302)
    assert cal.threshold == pytest.approx(0.89)
    assert (cal.served, cal.wrong) == (301, 1)
    assert cal.upper_bound == pytest.approx(clopper_pearson_upper(1, 301))
    assert "exceeds" in cal.reason
    assert cal.method == "clopper-pearson"
    # A stricter target stops at the clean band.
    strict = calibrate(_verdicts(pairs), target_error=0.011, min_samples=280)
    assert strict.threshold == pytest.approx(0.95 - 299 * 0.0001) and strict.wrong == 0


def test_stops_at_the_first_violation_even_if_lower_looks_good_again() -> None:
    # Clean on top, a bad band, then lots of clean verdicts below that would dilute it.
    pairs = [(0.99 - i * 1e-5, True) for i in range(200)]
    pairs += [(0.95 - i * 1e-5, False) for i in range(20)]
    pairs += [(0.90 - i * 1e-5, True) for i in range(5000)]
    cal = calibrate(_verdicts(pairs), target_error=0.02, min_samples=150)
    assert cal.threshold is not None and cal.threshold > 0.95
    assert cal.wrong == 0


def test_too_few_samples_recommends_nothing() -> None:
    cal = calibrate(_verdicts([(0.9, True)] * 50), target_error=0.02, min_samples=200)
    assert cal.threshold is None and "50 verdicts, 200 needed" in cal.reason
    assert calibrate([], target_error=0.02, min_samples=1).threshold is None


def test_all_wrong_recommends_nothing() -> None:
    cal = calibrate(_verdicts([(0.99, False)] * 500), target_error=0.05, min_samples=10)
    assert cal.threshold is None and cal.upper_bound == 1.0


def test_bound_holds_on_held_back_data() -> None:
    """Verdicts drawn from a known error-versus-similarity curve. The guarantee is
    statistical: the calibrated threshold's true error rate (exact, from the curve)
    exceeds the target in at most 1 - confidence of runs; scanning down from the top
    and stopping at the first failure is a fixed-sequence test, so the many thresholds
    looked at do not inflate that."""
    rng = random.Random(7)

    def p_wrong(s: float) -> float:
        return max(0.0, min(1.0, (0.97 - s) * 2.0))  # 0 above 0.97, rising below

    def true_error(t: float) -> float:  # mean of p_wrong over uniform s in [t, 1]
        return 0.0 if t >= 0.97 else (0.97 - t) ** 2 / (1.0 - t)

    runs, over, chosen = 40, 0, []
    for _ in range(runs):
        verdicts = []
        for _ in range(4000):
            s = rng.uniform(0.7, 1.0)
            verdicts.append(Verdict(similarity=s, agreed=rng.random() >= p_wrong(s)))
        cal = calibrate(verdicts, target_error=0.02, min_samples=200, confidence=0.95)
        assert cal.threshold is not None
        chosen.append(cal.threshold)
        over += true_error(cal.threshold) > 0.02
    assert over <= 5, f"{over} of {runs} runs broke the target; about 2 expected"
    # Not uselessly cautious either: the exact answer is t = 0.9335.
    chosen.sort()
    assert 0.93 < chosen[runs // 2] < 0.96


def test_curve_is_monotone_in_served_and_thinned() -> None:
    rng = random.Random(1)
    vs = [Verdict(rng.random(), rng.random() < 0.9) for _ in range(5000)]
    curve = error_curve(vs, most=100)
    assert len(curve) <= 101
    assert [p.threshold for p in curve] == sorted((p.threshold for p in curve), reverse=True)
    assert all(a.served < b.served for a, b in itertools.pairwise(curve))
    assert curve[-1].served == 5000
    assert all(p.error_rate <= p.upper_bound for p in curve)


# -- min_samples counts all verdicts; judge noise ---------------------------------------
def test_min_samples_counts_all_verdicts_not_those_above_each_threshold() -> None:
    # 250 verdicts: 170 clean ones on top, 80 wrong ones far below. Before, min_samples
    # =200 had to be met *above* the threshold, so nothing could be recommended.
    pairs = [(0.97 - i * 1e-4, True) for i in range(170)]
    pairs += [(0.60 - i * 1e-4, False) for i in range(80)]
    cal = calibrate(_verdicts(pairs), target_error=0.02, min_samples=200)
    assert cal.threshold == pytest.approx(0.97 - 169 * 1e-4)
    assert (cal.served, cal.wrong, cal.samples) == (170, 0, 250)
    # Fewer verdicts in all than min_samples: nothing, whatever they say.
    few = calibrate(_verdicts(pairs[:150]), target_error=0.02, min_samples=200)
    assert few.threshold is None and "150 verdicts, 200 needed" in few.reason


def test_noise_aware_bound_matches_its_formula() -> None:
    f, a = 0.05, 0.02
    assert true_error_bound(10, 200, 0.95, 0.0, 0.0) == pytest.approx(
        clopper_pearson_upper(10, 200)
    )
    expected = (clopper_pearson_upper(10, 200) - f) / (1 - f - a)
    assert true_error_bound(10, 200, 0.95, f, a) == pytest.approx(expected)
    assert true_error_bound(0, 200, 0.95, 0.2, 0.0) == 0.0  # clamped at 0
    # The one-tail test and the bound agree.
    limit = observed_limit(0.05, f, a)
    assert within_target(10, 200, 0.05, 0.95, f, a) == (
        clopper_pearson_upper(10, 200) <= limit + 1e-9
    )
    assert clopper_pearson_lower(0, 10) == 0.0
    assert clopper_pearson_lower(18, 240) == pytest.approx(
        beta.ppf(0.05, 18, 240 - 18 + 1), rel=1e-6
    )
    with pytest.raises(ValueError):
        calibrate(
            [], target_error=0.02, min_samples=1, false_disagreement=0.6, false_agreement=0.5
        )


def test_noise_credit_needs_the_tenants_own_evidence() -> None:
    noisy = [Verdict(0.99 - i * 1e-3, i % 10 != 0) for i in range(200)]  # 10 % disagree
    assert noise_credit(noisy, 0.049) == 0.049  # capped by the judge's declared rate
    clean = [Verdict(0.99 - i * 1e-3, True) for i in range(200)]
    assert noise_credit(clean, 0.049) == 0.0  # a judge that is not noisy here: no credit
    assert noise_credit(noisy[:100], 0.049) == 0.0  # too few verdicts on top (25 < 30)
    assert noise_credit(noisy, 0.0) == 0.0


def _noisy_run(rng: random.Random, n: int, judge_false_disagreement: float) -> list[Verdict]:
    """Verdicts from a known error curve, judged by a judge that calls right answers
    wrong at ``judge_false_disagreement`` and wrong answers right at 1 %."""
    out = []
    for _ in range(n):
        s = rng.uniform(0.5, 1.0)
        truly_right = rng.random() >= _p_wrong(s)
        # A right answer is called wrong at the judge's rate, a wrong one right at 1 %.
        noise = rng.random()
        agreed = noise >= judge_false_disagreement if truly_right else noise < 0.01
        out.append(Verdict(similarity=s, agreed=agreed))
    return out


def _p_wrong(s: float) -> float:
    return max(0.0, min(1.0, (0.85 - s) * 3.0))  # 0 above 0.85, rising below


def _true_error(t: float) -> float:
    """Mean of _p_wrong over uniform s in [t, 1]."""
    if t >= 0.85:
        return 0.0
    return 1.5 * (0.85 - t) ** 2 / (1.0 - t)


def test_noise_aware_bound_holds_by_simulation_and_plain_bound_never_recommends() -> None:
    """A judge that calls 5 % of right answers wrong and 1 % of wrong ones right, and
    declares 4.9 % and 2 % (the MiniLM answer judge's measured bounds); 400 verdicts per
    run, a 5 % target. The calibrated threshold's true error (exact, from the curve)
    exceeds the target in at most ~5 % of runs. The plain bound, which takes every
    disagreement for a wrong serve, recommends nothing at this volume; the noise-aware
    one sometimes does (more verdicts, or a less noisy judge, make that more often)."""
    rng = random.Random(2026)
    runs, over, recommended, plain_recommended = 60, 0, 0, 0
    for _ in range(runs):
        verdicts = _noisy_run(rng, 400, 0.05)
        credit = noise_credit(verdicts, 0.049)
        cal = calibrate(
            verdicts,
            target_error=0.05,
            min_samples=200,
            false_disagreement=credit,
            false_agreement=0.02,
        )
        plain = calibrate(verdicts, target_error=0.05, min_samples=200)
        plain_recommended += plain.threshold is not None
        if cal.threshold is not None:
            recommended += 1
            over += _true_error(cal.threshold) > 0.05
    assert over <= 0.08 * runs, f"{over} of {runs} runs broke the target"
    assert recommended > 2 * plain_recommended
