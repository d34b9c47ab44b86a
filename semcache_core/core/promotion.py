"""From verdicts to a policy change: calibrate, then promote, recalibrate or demote.

Pure: the drivers read the verdicts and write the new overrides (audited).
"""

from __future__ import annotations

from typing import Any

from .. import calibration
from ..calibration import Calibration, Verdict
from ..config import CacheConfig
from ..judges import Judge
from ..tenant_policy import TenantPolicy

# A live tenant's recalibrated threshold moves down only by at least this much (up: any
# amount), so the audit log is not a stream of jitter.
RECALIBRATE_STEP = 0.005


def parse_verdicts(records: list[dict[str, Any]]) -> list[Verdict]:
    out = []
    for r in records:
        try:
            out.append(
                Verdict(
                    similarity=float(r["s"]),
                    agreed=r["a"] in (b"1", "1"),
                    at=float(r["t"]),
                    candidate=r["c"].decode() if isinstance(r.get("c"), bytes) else None,
                    guarded=r.get("g") in (b"1", "1"),
                )
            )
        except (KeyError, ValueError):
            continue  # a malformed record is skipped, not fatal
    return out


def recommend(
    judge: Judge, config: CacheConfig, pol: TenantPolicy, verdicts: list[Verdict]
) -> Calibration:
    """Calibrate, crediting the judge's measured noise only as far as this tenant's
    own most similar verdicts show it (`calibration.noise_credit`)."""
    declared = float(getattr(judge, "false_disagreement", 0.0))
    served = [v for v in verdicts if not v.guarded]  # guarded: never served at any threshold
    guarded = len(verdicts) - len(served)
    return calibration.calibrate(
        served,
        target_error=pol.target_error,
        # min_samples counts all the tenant's verdicts, guarded ones included.
        min_samples=max(1, pol.min_samples - guarded),
        confidence=config.confidence,
        false_disagreement=calibration.noise_credit(served, declared),
        false_agreement=float(getattr(judge, "false_agreement", 0.0)),
    )


def promotion(pol: TenantPolicy, cal: Calibration) -> tuple[dict[str, Any], str] | None:
    """The new overrides a calibration applies and the audit action (``promote``:
    shadow to live; ``recalibrate``: a live threshold moves; ``demote``: live back to
    shadow, no threshold holds any more), or ``None`` when nothing changes."""
    old = pol.overrides()
    if cal.threshold is None:
        if pol.semantic == "live" and cal.samples >= cal.min_samples and cal.curve:
            return {**old, "semantic": "shadow"}, "demote"
        return None
    new = {**old, "semantic": "live", "threshold": cal.threshold}
    pt = old.get("promotion_threshold")
    if pt is not None and pt < cal.threshold:
        new["promotion_threshold"] = cal.threshold  # never below the threshold
    if pol.semantic != "live":
        return new, "promote"
    if cal.threshold > pol.threshold or cal.threshold <= pol.threshold - RECALIBRATE_STEP:
        return new, "recalibrate"
    return None
