"""Calibration: from shadow verdicts to the lowest threshold that is safe to serve.

A verdict says: the nearest cached candidate had similarity ``s`` to the request, and
its answer did (or did not) agree with the fresh answer. Serving at threshold ``t``
would have served every candidate with ``s >= t``; among those, the disagreeing ones
are wrong serves. For each ``t`` we bound the wrong-serve rate from above with the
one-sided **Clopper-Pearson** (exact binomial) interval, which never undercovers, unlike
the Wilson or normal intervals at the small error counts that matter here.

The recommended threshold is the lowest ``t`` such that, scanning down from the top,
every threshold with at least ``min_samples`` served verdicts has its bound at or below
the target. Stopping at the first violation keeps the choice from being the lucky low
point of a noisy curve.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

METHOD = "clopper-pearson"


@dataclass(frozen=True)
class Verdict:
    """One judged shadow candidate.

    Attributes:
        similarity: cosine similarity of the candidate to the request.
        agreed: the candidate's answer agreed with the fresh one.
        at: when it was judged (epoch seconds).
        candidate: the candidate entry's key, when known.
    """

    similarity: float
    agreed: bool
    at: float = 0.0
    candidate: str | None = None


@dataclass(frozen=True)
class CurvePoint:
    """What serving at ``threshold`` would have done to the verdicts seen.

    Attributes:
        threshold: the similarity bar.
        served: verdicts at or above it (would-be hits).
        wrong: of those, the disagreeing ones.
        error_rate: ``wrong / served``.
        upper_bound: the Clopper-Pearson upper bound on the error rate.
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
        min_samples: served verdicts a threshold needed to be considered.
        confidence: the one-sided confidence level of the bound.
        samples: all verdicts considered.
        method: the interval used (``"clopper-pearson"``).
        reason: one sentence on why this threshold (or why none).
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


def within_target(wrong: int, n: int, target: float, confidence: float) -> bool:
    """Is the upper bound at or below ``target``? (One tail evaluation, no root finding.)"""
    if n <= 0:
        return False
    return binomial_cdf(wrong, n, target) <= 1.0 - confidence + 1e-12


def samples_needed(target_error: float, confidence: float = 0.95) -> int:
    """The fewest verdicts whose bound can reach ``target_error`` (with zero wrong):
    ``1 - (1 - confidence) ** (1 / n) <= target``."""
    return math.ceil(math.log(1.0 - confidence) / math.log(1.0 - target_error) - 1e-9)


# -- the recommendation --------------------------------------------------------------------
def error_curve(
    verdicts: Iterable[Verdict], confidence: float = 0.95, most: int = 400
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
            upper_bound=clopper_pearson_upper(k, n, confidence),
        )
        for t, n, k in counts
    ]


def calibrate(
    verdicts: Sequence[Verdict],
    *,
    target_error: float,
    min_samples: int,
    confidence: float = 0.95,
) -> Calibration:
    """The lowest threshold whose wrong-serve bound stays at or below ``target_error``.

    Args:
        verdicts: judged shadow candidates.
        target_error: the bound's ceiling, e.g. 0.02.
        min_samples: served verdicts a threshold needs before it is considered.
        confidence: one-sided confidence of the Clopper-Pearson bound.
    """
    ordered = sorted(verdicts, key=lambda v: v.similarity, reverse=True)
    # Below this many served verdicts even zero wrong ones cannot bring the bound under
    # the target; such thresholds are skipped like those under min_samples (otherwise a
    # small min_samples would stop the scan before the evidence could ever suffice).
    needed = max(min_samples, samples_needed(target_error, confidence))
    chosen: tuple[float, int, int] | None = None
    stop_reason = ""
    served = wrong = 0
    i = 0
    while i < len(ordered):
        s = ordered[i].similarity
        while i < len(ordered) and ordered[i].similarity == s:
            served += 1
            wrong += not ordered[i].agreed
            i += 1
        if served < needed:
            continue
        if within_target(wrong, served, target_error, confidence):
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
        curve=error_curve(ordered, confidence),
    )
    if chosen is None:
        if len(ordered) < needed:
            reason = f"{len(ordered)} verdicts, {needed} needed"
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
        upper_bound=clopper_pearson_upper(k, n, confidence),
        reason=stop_reason or "every verdict down to the lowest similarity seen is within target",
        **base,  # type: ignore[arg-type]
    )
