"""`TenantPolicy`: how one tenant's lookups are served, overridable at run time.

The engine's `CacheConfig` gives the code defaults. A tenant's policy in Redis overrides
only the fields that were set explicitly, so a later change of a code default still
reaches tenants that never overrode that field::

    engine.set_policy("acme", TenantPolicy(semantic="shadow", promotion_threshold=0.97))
    engine.get_policy("acme").threshold  # still the engine's default threshold

Semantic modes:
    * ``off``: only the exact layer answers.
    * ``shadow``: the nearest semantic candidate is found and measured but not served;
      the LLM answers, and when its answer is stored the engine records a verdict
      (similarity, did the candidate agree?). A candidate at or above
      ``promotion_threshold`` is served anyway and counted as promoted.
    * ``live``: a candidate at or above ``threshold`` is served.

A shadow tenant never serves more than a live one would: ``promotion_threshold`` below
``threshold`` is refused with a `ConfigurationError` when it was set explicitly (on the
tenant, or on the engine's config), and raised to ``threshold`` when it is only the
inherited default (e.g. the default 0.98 under an engine threshold of 0.99).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .config import CacheConfig

SemanticMode = Literal["off", "shadow", "live"]

# The fields a tenant may override, and the CacheConfig field each defaults from.
POLICY_FIELDS: tuple[str, ...] = (
    "exact",
    "semantic",
    "threshold",
    "promotion_threshold",
    "ttl",
    "target_error",
    "auto_promote",
    "min_samples",
)


class TenantPolicy(BaseModel):
    """One tenant's serving policy. Unset fields fall back to the engine's config.

    Attributes:
        exact: serve identical requests from the exact layer.
        semantic: ``off``, ``shadow`` or ``live`` (see the module docs).
        threshold: cosine similarity in [0, 1] a live semantic hit needs.
        promotion_threshold: in shadow mode, a candidate at or above this similarity is
            served (counted as ``promoted``); ``None`` serves nothing in shadow mode.
        ttl: default entry TTL in seconds for this tenant (``None``: never expires;
            ``0``: do not cache). A request's own TTL still wins.
        target_error: the wrong-serve rate among served semantic hits that calibration
            must stay under (an upper confidence bound, not the observed rate).
        auto_promote: apply calibrated thresholds and move the tenant from shadow to live
            once the evidence allows it.
        min_samples: verdicts (in all) the tenant needs before calibration recommends a
            threshold. The bound itself decides how many must lie above that threshold.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exact: bool = True
    semantic: SemanticMode = "live"
    threshold: float = Field(0.92, ge=0.0, le=1.0)
    promotion_threshold: float | None = Field(0.98, ge=0.0, le=1.0)
    ttl: float | None = Field(None, ge=0.0)
    target_error: float = Field(0.02, gt=0.0, lt=1.0)
    auto_promote: bool = False
    min_samples: int = Field(200, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _consistent(self) -> TenantPolicy:
        if {"threshold", "promotion_threshold"} <= self.model_fields_set:
            problem = inconsistency(self.threshold, self.promotion_threshold)
            if problem:
                raise ValueError(problem)
        return self

    def overrides(self) -> dict[str, Any]:
        """The fields set explicitly: what `CacheEngine.set_policy` stores."""
        return self.model_dump(include=self.model_fields_set)

    def to_json(self) -> str:
        return json.dumps(self.overrides(), sort_keys=True)


def inconsistency(threshold: float, promotion_threshold: float | None) -> str | None:
    """Why a promotion threshold below the threshold is refused, with the fix; else None."""
    if promotion_threshold is None or promotion_threshold >= threshold:
        return None
    return (
        f"promotion_threshold {promotion_threshold:g} is below threshold {threshold:g}: a "
        "shadow tenant would serve candidates a live one would not. Set "
        f"promotion_threshold >= {threshold:g}, or None to serve nothing in shadow mode"
    )


def _clamped(values: dict[str, Any]) -> dict[str, Any]:
    """An inherited promotion threshold below the threshold follows it up."""
    pt = values.get("promotion_threshold")
    if pt is not None and pt < values["threshold"]:
        return {**values, "promotion_threshold": values["threshold"]}
    return values


def check_overrides(config: CacheConfig, overrides: dict[str, Any]) -> None:
    """Refuse overrides whose own promotion threshold sits below the threshold they get.

    Raises:
        ConfigurationError: with the fix.
    """
    if "promotion_threshold" not in overrides:
        return  # inherited: follows the threshold up (see the module docs)
    threshold = overrides.get("threshold", config.threshold)
    problem = inconsistency(threshold, overrides["promotion_threshold"])
    if problem:
        raise ConfigurationError(f"invalid tenant policy: {problem}")


def make_policy(**fields: Any) -> TenantPolicy:
    """Build a `TenantPolicy`, raising `ConfigurationError` with a fix-it message."""
    try:
        return TenantPolicy(**fields)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']} "
            f"(got {err.get('input')!r})"
            for err in exc.errors()
        ]
        raise ConfigurationError(
            "invalid tenant policy:\n  "
            + "\n  ".join(lines)
            + "\n  fields: "
            + ", ".join(POLICY_FIELDS)
        ) from None


def default_policy(config: CacheConfig) -> TenantPolicy:
    """The code defaults, from the engine's config (no field counts as set)."""
    values = _clamped({name: getattr(config, name) for name in POLICY_FIELDS})
    return TenantPolicy.model_construct(**values)  # validated already, as the config


def effective_policy(config: CacheConfig, stored: dict[str, Any] | None) -> TenantPolicy:
    """Code defaults overlaid with a tenant's stored overrides.

    Raises:
        ConfigurationError: the stored overrides are invalid.
    """
    base = {name: getattr(config, name) for name in POLICY_FIELDS}
    merged = make_policy(**_clamped({**base, **(stored or {})}))
    # Keep track of what the tenant set, so a round trip stores only its overrides.
    return TenantPolicy.model_construct(_fields_set=set(stored or ()), **merged.model_dump())


def parse_stored(raw: bytes | str | None) -> dict[str, Any] | None:
    """The overrides stored for a tenant; ``None`` when there are none.

    Raises:
        ValueError: the stored value is not a JSON object of known fields.
    """
    if raw is None:
        return None
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a stored policy must be a JSON object")
    data.pop("updated_at", None)
    unknown = set(data) - set(POLICY_FIELDS)
    if unknown:
        raise ValueError(f"unknown policy fields {sorted(unknown)}")
    return data
