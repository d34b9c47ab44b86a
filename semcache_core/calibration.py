"""Calibration: from shadow verdicts to the lowest threshold that is safe to serve.

A verdict says: the nearest cached candidate had similarity ``s`` to the request, and
its answer did (or did not) agree with the fresh answer. Serving at threshold ``t``
would have served every candidate with ``s >= t``; among those, the disagreeing ones
are wrong serves. For each ``t`` we bound the wrong-serve rate from above with the
one-sided **Clopper-Pearson** (exact binomial) interval, which never undercovers, unlike
the Wilson or normal intervals at the small error counts that matter here.

The recommended threshold is the lowest ``t`` such that, scanning down from the top,
every threshold with enough served verdicts to reach the target at all has its bound at
or below the target. Stopping at the first violation keeps the choice from being the
lucky low point of a noisy curve (a fixed-sequence test: looking at many thresholds does
not inflate the error probability). ``min_samples`` counts *all* the tenant's verdicts:
calibration does not run on less evidence than that, but a threshold is not required to
have ``min_samples`` verdicts above it, only as many as the bound needs.

**Judge noise.** A verdict is a judge's opinion, not the truth. A judge that calls a
right but reworded answer "disagreed" with probability ``f`` (false disagreement) and a
wrong answer "agreed" with probability ``a`` (false agreement) turns a true wrong-serve
rate ``e`` into an observed disagreement rate ``p = f + e * (1 - f - a)``. Given a lower
bound on ``f`` and an upper bound on ``a``, testing ``p <= f + target * (1 - f - a)``
with the exact binomial tail is a valid one-sided test of ``e <= target``, and
``(upper(p) - f) / (1 - f - a)`` a valid upper bound on ``e``. With ``f = a = 0`` this
is the plain Clopper-Pearson bound. `noise_credit` caps the judge's declared ``f`` by
what the tenant's own most similar verdicts show, so a judge that is not noisy on this
tenant's answers earns no credit.

What it costs: a judge that calls 6 % of right answers wrong leaves little room under a
2 % target; a few hundred verdicts then certify about 5 %, and 2 % needs thousands (or a
less noisy judge). The bound says so rather than guessing.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

METHOD = "clopper-pearson"
NOISY_METHOD = "clopper-pearson, noise-aware"


@dataclass(frozen=True)
class Verdict:
    """One judged shadow candidate.

    Attributes:
        similarity: cosine similarity of the candidate to the request.
        agreed: the candidate's answer agreed with the fresh one.
        at: when it was judged (epoch seconds).
        candidate: the candidate entry's key, when known.
        guarded: the verifier refused the candidate; calibration leaves it out (it is
            never served), and the share of guarded verdicts that agreed tells how many
            right answers the verifier turns away.
    """

    similarity: float
    agreed: bool
    at: float = 0.0
    candidate: str | None = None
    guarded: bool = False


@dataclass(frozen=True)
class CurvePoint:
    """What serving at ``threshold`` would have done to the verdicts seen.

    Attributes:
        threshold: the similarity bar.
        served: verdicts at or above it (would-be hits).
        wrong: of those, the disagreeing ones.
        error_rate: ``wrong / served``.
        upper_bound: the upper bound on the true error rate (Clopper-Pearson, corrected
            for the judge's noise when the calibration was given any).
    """

    threshold: float
    served: int
    wrong: int
    error_rate: float
    upper_bound: float


@dataclass(frozen=True)
class Calibration:
    """The recommendation and its evidence.

    Attributes:
        threshold: the recommended threshold, or ``None`` when the evidence does not
            support any (too few verdicts, or too many disagreements).
        served: verdicts that threshold would have served.
        wrong: disagreements among them.
        observed_error: ``wrong / served``.
        upper_bound: the bound on the error rate at that threshold.
        target_error: the bound it had to stay under.
        min_samples: verdicts (in all) calibration needed before recommending anything.
        confidence: the one-sided confidence level of the bound.
        samples: all verdicts considered.
        method: the interval used (``"clopper-pearson"``, or ``"clopper-pearson,
            noise-aware"`` when judge noise was accounted for).
        reason: one sentence on why this threshold (or why none).
        false_disagreement: the judge's false-disagreement rate the bound credited.
        false_agreement: the judge's false-agreement rate the bound allowed for.
        curve: threshold versus error for every distinct similarity (for plots).
    """

    threshold: float | None
    served: int
    wrong: int
    observed_error: float
    upper_bound: float
    target_error: float
    min_samples: int
    confidence: float
    samples: int
    method: str = METHOD
    reason: str = ""
    false_disagreement: float = 0.0
    false_agreement: float = 0.0
    curve: list[CurvePoint] = field(default_factory=list, repr=False)

    def evidence(self) -> dict[str, float | int | str | None]:
        """The figures an audit record keeps."""
        return {
            "threshold": self.threshold,
            "served": self.served,
            "wrong": self.wrong,
            "observed_error": round(self.observed_error, 6),
            "upper_bound": round(self.upper_bound, 6),
            "target_error": self.target_error,
            "min_samples": self.min_samples,
            "confidence": self.confidence,
            "samples": self.samples,
            "method": self.method,
            "false_disagreement": round(self.false_disagreement, 6),
            "false_agreement": round(self.false_agreement, 6),
        }


# -- the binomial tail, without scipy ------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-14:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return regularized_beta(n - k, k + 1, 1.0 - p)


def clopper_pearson_upper(wrong: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a rate from ``wrong`` failures in ``n`` trials.

    The ``p`` with ``P(X <= wrong | n, p) = 1 - confidence``; 1.0 when ``n == 0``.
    """
    if n <= 0 or wrong >= n:
        return 1.0
    alpha = 1.0 - confidence
    if wrong == 0:
        return 1.0 - float(alpha ** (1.0 / n))  # closed form
    lo, hi = wrong / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if binomial_cdf(wrong, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return hi


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided lower confidence bound on a rate from ``k`` events in ``n`` trials."""
    if n <= 0 or k <= 0:
        return 0.0
    return 1.0 - clopper_pearson_upper(n - k, n, confidence)


def observed_limit(target: float, false_disagreement: float, false_agreement: float) -> float:
    """The disagreement rate a judge with these noise rates shows at true error ``target``."""
    return false_disagreement + target * (1.0 - false_disagreement - false_agreement)


def true_error_bound(
    wrong: int,
    n: int,
    confidence: float = 0.95,
    false_disagreement: float = 0.0,
    false_agreement: float = 0.0,
) -> float:
    """Upper bound on the true wrong-serve rate from ``wrong`` disagreements in ``n``."""
    upper = clopper_pearson_upper(wrong, n, confidence)
    if n <= 0 or wrong >= n:
        return 1.0
    scale = 1.0 - false_disagreement - false_agreement
    return min(1.0, max(0.0, (upper - false_disagreement) / scale))


def within_target(
    wrong: int,
    n: int,
    target: float,
    confidence: float,
    false_disagreement: float = 0.0,
    false_agreement: float = 0.0,
) -> bool:
    """Is the (noise-corrected) upper bound at or below ``target``? One tail evaluation."""
    if n <= 0:
        return False
    limit = observed_limit(target, false_disagreement, false_agreement)
    return binomial_cdf(wrong, n, limit) <= 1.0 - confidence + 1e-12


def samples_needed(
    target_error: float,
    confidence: float = 0.95,
    false_disagreement: float = 0.0,
    false_agreement: float = 0.0,
) -> int:
    """The fewest verdicts whose bound can reach ``target_error`` (with zero wrong):
    ``1 - (1 - confidence) ** (1 / n) <= limit``."""
    limit = observed_limit(target_error, false_disagreement, false_agreement)
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log(1.0 - limit) - 1e-9))


def noise_credit(
    verdicts: Iterable[Verdict],
    declared: float,
    *,
    top_share: float = 0.25,
    at_least: int = 30,
) -> float:
    """The false-disagreement rate calibration may credit: the judge's ``declared``
    (measured, a lower confidence bound) rate, capped by the disagreement rate among the
    tenant's most similar verdicts (the top ``top_share``, at least ``at_least`` of them).

    Near the top nearly every candidate is right, so disagreements there are mostly the
    judge's noise on this tenant's answers: a judge that agrees on them (a deterministic
    LLM, templated answers) earns no credit, and until ``at_least`` such verdicts exist
    none is given. The cap is a guard, not a confidence bound: a tenant whose most
    similar candidates are often wrong would have that error partly credited as noise,
    up to ``declared`` at most.
    """
    if declared <= 0.0:
        return 0.0
    ordered = sorted(verdicts, key=lambda v: v.similarity, reverse=True)
    top = ordered[: int(len(ordered) * top_share)]
    if len(top) < at_least:
        return 0.0
    return min(declared, sum(not v.agreed for v in top) / len(top))


# -- the recommendation --------------------------------------------------------------------
def error_curve(
    verdicts: Iterable[Verdict],
    confidence: float = 0.95,
    most: int = 400,
    false_disagreement: float = 0.0,
    false_agreement: float = 0.0,
) -> list[CurvePoint]:
    """Threshold versus error, highest threshold first: one point per distinct
    similarity, thinned evenly to at most ``most`` points (plus the last)."""
    ordered = sorted(verdicts, key=lambda v: v.similarity, reverse=True)
    counts: list[tuple[float, int, int]] = []
    served = wrong = 0
    i = 0
    while i < len(ordered):
        s = ordered[i].similarity
        while i < len(ordered) and ordered[i].similarity == s:
            served += 1
            wrong += not ordered[i].agreed
            i += 1
        counts.append((s, served, wrong))
    if len(counts) > most:
        step = len(counts) / most
        counts = [counts[int(j * step)] for j in range(most)] + [counts[-1]]
    return [
        CurvePoint(
            threshold=t,
            served=n,
            wrong=k,
            error_rate=k / n,
            upper_bound=true_error_bound(k, n, confidence, false_disagreement, false_agreement),
        )
        for t, n, k in counts
    ]


def calibrate(
    verdicts: Sequence[Verdict],
    *,
    target_error: float,
    min_samples: int,
    confidence: float = 0.95,
    false_disagreement: float = 0.0,
    false_agreement: float = 0.0,
) -> Calibration:
    """The lowest threshold whose wrong-serve bound stays at or below ``target_error``.

    Args:
        verdicts: judged shadow candidates.
        target_error: the bound's ceiling, e.g. 0.02.
        min_samples: verdicts (in all) needed before any threshold is recommended.
        confidence: one-sided confidence of the bound.
        false_disagreement: a lower bound on the judge's rate of calling a right answer
            wrong (e.g. from `noise_credit`); 0 for the plain bound.
        false_agreement: an upper bound on the judge's rate of calling a wrong answer
            right; 0 assumes the judge never does.

    Returns:
        The recommendation (``threshold`` is ``None`` when the evidence supports none).

    Example:
        >>> calibrate([Verdict(0.95, True)] * 300, target_error=0.02, min_samples=200).served
        300
    """
    f, a = false_disagreement, false_agreement
    if not (0.0 <= f < 1.0 and 0.0 <= a < 1.0 and f + a < 1.0):
        raise ValueError(f"judge noise rates must be in [0, 1) with a sum below 1, got {f}, {a}")
    ordered = sorted(verdicts, key=lambda v: v.similarity, reverse=True)
    # Below this many served verdicts even zero disagreements cannot bring the bound under
    # the target; such thresholds are skipped (scanning them would only stop the scan).
    needed = samples_needed(target_error, confidence, f, a)
    chosen: tuple[float, int, int] | None = None
    stop_reason = ""
    served = wrong = 0
    i = 0
    enough = len(ordered) >= min_samples
    while enough and i < len(ordered):
        s = ordered[i].similarity
        while i < len(ordered) and ordered[i].similarity == s:
            served += 1
            wrong += not ordered[i].agreed
            i += 1
        if served < needed:
            continue
        if within_target(wrong, served, target_error, confidence, f, a):
            chosen = (s, served, wrong)
        else:
            stop_reason = (
                f"below {s:.4f} the bound exceeds {target_error:g} ({wrong} wrong of {served})"
            )
            break
    base = dict(
        target_error=target_error,
        min_samples=min_samples,
        confidence=confidence,
        samples=len(ordered),
        method=NOISY_METHOD if f or a else METHOD,
        false_disagreement=f,
        false_agreement=a,
        curve=error_curve(ordered, confidence, false_disagreement=f, false_agreement=a),
    )
    if chosen is None:
        if not enough:
            reason = f"{len(ordered)} verdicts, {min_samples} needed"
        elif len(ordered) < needed:
            reason = f"{len(ordered)} verdicts, {needed} needed to reach the target at all"
        else:
            reason = stop_reason or "no threshold keeps the bound under the target"
        return Calibration(
            threshold=None,
            served=0,
            wrong=0,
            observed_error=0.0,
            upper_bound=1.0,
            reason=reason,
            **base,  # type: ignore[arg-type]
        )
    threshold, n, k = chosen
    return Calibration(
        threshold=threshold,
        served=n,
        wrong=k,
        observed_error=k / n,
        upper_bound=true_error_bound(k, n, confidence, f, a),
        reason=stop_reason or "every verdict down to the lowest similarity seen is within target",
        **base,  # type: ignore[arg-type]
    )
