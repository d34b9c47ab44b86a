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
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
        min_samples: verdicts a threshold must be backed by before calibration trusts it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exact: bool = True
    semantic: SemanticMode = "live"
    threshold: float = Field(0.90, ge=0.0, le=1.0)
    promotion_threshold: float | None = Field(0.98, ge=0.0, le=1.0)
    ttl: float | None = Field(None, ge=0.0)
    target_error: float = Field(0.02, gt=0.0, lt=1.0)
    auto_promote: bool = False
    min_samples: int = Field(200, ge=1, le=10_000_000)

    def overrides(self) -> dict[str, Any]:
        """The fields set explicitly: what `CacheEngine.set_policy` stores."""
        return self.model_dump(include=self.model_fields_set)

    def to_json(self) -> str:
        return json.dumps(self.overrides(), sort_keys=True)


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
    values = {name: getattr(config, name) for name in POLICY_FIELDS}
    return TenantPolicy.model_construct(**values)  # validated already, as the config


def effective_policy(config: CacheConfig, stored: dict[str, Any] | None) -> TenantPolicy:
    """Code defaults overlaid with a tenant's stored overrides.

    Raises:
        ConfigurationError: the stored overrides are invalid.
    """
    base = default_policy(config).model_dump()
    merged = make_policy(**{**base, **(stored or {})})
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
