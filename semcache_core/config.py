"""Settings: arguments, then ``SEMCACHE_*`` environment variables, then defaults.

One frozen, strict pydantic model. A typo in a setting raises instead of being ignored,
ranges are validated, and every message says how to fix the value.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

MAX_TTL = 10 * 365 * 24 * 3600.0
"""The longest TTL accepted: Redis' PEXPIRE takes milliseconds in a signed 64-bit
integer, and a bound keeps arithmetic on expiry times finite."""

# Settings whose values never appear in an error message.
_SECRET_FIELDS = frozenset({"trace_key"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class CacheConfig(BaseSettings):
    """Everything a `CacheEngine` can be told.

    Every field can also be set through the environment, e.g. ``SEMCACHE_REDIS_URL`` or
    ``SEMCACHE_THRESHOLD=0.92``. Explicit arguments win over the environment.

    TTL semantics (seconds), the same wherever a TTL is accepted:
        * ``None``: the entry never expires.
        * ``> 0``: the entry expires that many seconds after it is written. A hit does not
          extend it unless ``sliding_ttl`` is on, in which case every hit restarts it.
        * ``0``: do not cache: the write is skipped (an entry that lives zero seconds).
    """

    model_config = SettingsConfigDict(
        env_prefix="SEMCACHE_", frozen=True, extra="forbid", validate_default=True
    )

    redis_url: str = Field("redis://localhost:6379/0", description="Where Redis is.", repr=False)
    namespace: str = Field(
        "default", description="One RedisVL index per namespace; letters, digits, _ . -"
    )
    key_prefix: str = Field("semcache", description="First part of every Redis key.")
    cluster: bool | None = Field(
        None,
        description="Redis Cluster or one node: None detects it (INFO cluster_enabled) "
        "when the client is made; True or False forces it.",
    )
    cluster_buckets: int = Field(
        16,
        ge=1,
        le=4096,
        description="On a cluster: bucket indexes per namespace, each under its own hash "
        "tag (a partition's entries share one bucket). Fixed when the namespace is made.",
    )
    default_tenant: str = Field("default", description="Tenant used when none is set.")

    exact: bool = Field(True, description="Serve identical requests from the exact layer.")
    semantic: Literal["off", "shadow", "live"] = Field(
        "live",
        description="Serve similar questions ('live'), measure them without serving "
        "('shadow'), or neither ('off'). Default for tenants without a stored policy.",
    )
    threshold: float = Field(
        0.92,
        ge=0.0,
        le=1.0,
        description="Cosine similarity in [0, 1] at or above which a semantic hit is served.",
    )

    verify_strictness: Literal["lenient", "balanced", "strict"] = Field(
        "balanced",
        description="How strictly the built-in verifier compares a semantic candidate's "
        "question with the request's before it is served (see semcache_core.core.verify).",
    )
    search_candidates: int = Field(
        3,
        ge=1,
        le=50,
        description="Nearest semantic candidates a lookup considers; the first that passes "
        "the threshold and the verifier is served.",
    )
    max_question_tokens: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Questions longer than this are exact-only (an embedding of a cut-off "
        "text cannot tell them apart). Default: the embedder's own window when it "
        "reports one (all-MiniLM-L6-v2: 256 tokens).",
    )
    exact_only_kinds: tuple[str, ...] = Field(
        (),
        description="Request kinds served by the exact layer only, for every tenant "
        "(e.g. 'structured': any change of input changes the output).",
    )

    # Shadow mode and calibration (defaults for every tenant; see TenantPolicy).
    promotion_threshold: float | None = Field(
        0.98,
        ge=0.0,
        le=1.0,
        description="In shadow mode, a candidate at or above this similarity is served "
        "anyway (counted as promoted); None serves nothing in shadow mode. Never below "
        "threshold: set explicitly below it, it is refused; inherited, it follows it up.",
    )
    target_error: float = Field(
        0.02,
        gt=0.0,
        lt=1.0,
        description="Calibration keeps the upper bound of the wrong-serve rate under this.",
    )
    auto_promote: bool = Field(
        False, description="Apply calibrated thresholds and move tenants to live."
    )
    min_samples: int = Field(
        200, ge=1, le=10_000_000, description="Verdicts a calibrated threshold must rest on."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="One-sided confidence of the calibration bound."
    )
    shadow_floor: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Shadow candidates below this similarity are not judged (no verdict).",
    )
    entry_floors: bool = Field(
        True,
        description="Disagreeing verdicts raise that entry's own similarity floor just "
        "above the similarity at which it answered a different question.",
    )
    floor_evidence: int = Field(
        2,
        ge=1,
        le=100,
        description="Disagreeing verdicts an entry needs before its floor rises (judges "
        "are noisy: one false disagreement must not block a right answer); the floor goes "
        "just above the similarity of the floor_evidence-th highest of them.",
    )
    audit_rate: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="With auto_promote, the share of live semantic hits that is not "
        "served but judged, so calibration keeps learning above the live threshold.",
    )
    verdict_limit: int = Field(
        10_000, ge=10, le=10_000_000, description="Verdicts kept per tenant (a capped stream)."
    )
    calibrate_every: int = Field(
        25,
        ge=1,
        le=1_000_000,
        description="With auto_promote: new verdicts between background calibrations "
        "(run on the engine's own thread, never inside a lookup or store).",
    )
    policy_refresh: float = Field(
        2.0,
        ge=0.0,
        le=3600.0,
        description="Seconds a process trusts its copy of a tenant's stored policy.",
    )

    ttl: float | None = Field(
        None,
        ge=0.0,
        le=MAX_TTL,
        allow_inf_nan=False,
        description="Default entry TTL in seconds (at most 10 years; None: never expires).",
    )
    sliding_ttl: bool = Field(False, description="Each hit restarts the entry's TTL.")
    stale_grace: float = Field(
        0.0,
        ge=0.0,
        le=30 * 24 * 3600.0,
        allow_inf_nan=False,
        description="Seconds an entry stays in Redis past its TTL, served only by "
        "stale-if-error lookups (when the LLM fails).",
    )

    dims: int | None = Field(
        None, ge=1, le=32768, description="Embedding size; probed from the embedder if unset."
    )
    algorithm: Literal["auto", "hnsw", "flat"] = Field(
        "auto",
        description="Vector index: auto starts FLAT (exact, fastest while small) and "
        "rebuilds as HNSW in the background once an index holds flat_max_entries.",
    )
    flat_max_entries: int = Field(
        5_000,
        ge=1,
        le=10_000_000,
        description="Entries of one (bucket) index past which algorithm=auto moves it "
        "from FLAT to HNSW.",
    )
    datatype: Literal["float32", "float16"] = "float32"
    hnsw_m: int = Field(
        32,
        ge=2,
        le=512,
        description="HNSW links per node. 32 (with hnsw_ef_construction 200) finds the "
        "nearest entry at a lower EF_RUNTIME than 16 does, for more work per insert.",
    )
    hnsw_ef_construction: int = Field(200, ge=1, le=4096)
    hnsw_ef_runtime: int = Field(10, ge=1, le=4096)
    hybrid_policy: Literal["auto", "batches", "adhoc_bf"] = Field(
        "auto",
        description="How an HNSW lookup combines the tenant/scope filter with KNN: auto "
        "picks adhoc_bf (exact) for a small partition, else batches with an EF_RUNTIME "
        "grown with the index size and the partition's share.",
    )

    socket_timeout: float = Field(
        0.1,
        gt=0.0,
        le=60.0,
        description="Seconds of Redis wait one user call may add: its lookup and the store "
        "of its answer share them (a store gets at least 10 ms); no single Redis call "
        "waits longer.",
    )
    connect_timeout: float = Field(
        0.5,
        gt=0.0,
        le=60.0,
        description="Seconds to open a connection (a paused server still accepts; this "
        "bounds unreachable hosts).",
    )
    max_connections: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Connections per pool (the sync driver's, and each event loop's); more "
        "concurrent calls wait for a free one. Administration calls have a pool of their "
        "own of the same size, opened on demand.",
    )
    pool_timeout: float = Field(
        3.0,
        gt=0.0,
        le=60.0,
        description="Seconds a lookup or store waits for a free pooled connection before "
        "it fails open (a miss; it does not open the breaker). On one event loop a burst "
        "queues for the loop, not for Redis: a lookup that gives up early adds an LLM call.",
    )
    admin_timeout: float = Field(
        5.0,
        gt=0.0,
        le=600.0,
        description="Seconds an administration call's Redis command may take (invalidate, "
        "count, stats, export, policies...), and how long it waits for a connection of "
        "its own pool; the lookup and store path keeps socket_timeout.",
    )
    admin_retries: int = Field(
        3,
        ge=0,
        le=100,
        description="Times an administration command is sent again after a timeout or a "
        "dropped connection (redis-py's Retry, exponential backoff with jitter); lookups "
        "and stores are never retried.",
    )
    breaker_failures: int = Field(
        3, ge=1, le=1000, description="Consecutive Redis failures that open the breaker."
    )
    breaker_cooldown: float = Field(
        2.0, ge=0.0, le=3600.0, description="Seconds the open breaker skips Redis."
    )
    l1_maxsize: int = Field(
        0, ge=0, le=10_000_000, description="In-process tier for exact hits (0: off)."
    )
    l1_ttl: float | None = Field(
        30.0, gt=0.0, description="Longest an entry stays in the in-process tier (seconds)."
    )
    l1_policy: Literal["lru", "lfu"] = "lru"
    l1_publish: bool = Field(
        True,
        description="Announce overwrites and invalidations to other processes' L1 tiers "
        "(keep on wherever any process uses L1).",
    )
    coalesce: Literal["off", "process", "redis"] = Field(
        "off",
        description="Concurrent identical misses wait for one leader's answer: in this "
        "process ('process') or across processes with a Redis lock ('redis').",
    )
    coalesce_wait: float = Field(
        2.0, gt=0.0, le=600.0, description="Longest a waiter waits before calling the LLM."
    )
    coalesce_lease: float = Field(30.0, gt=0.0, le=3600.0)
    embed_batch_window: float | None = Field(
        0.002,
        ge=0.0,
        le=1.0,
        description="Concurrent async embeddings within this many seconds share one "
        "embedder call (None: off).",
    )
    embed_batch_max: int = Field(256, ge=1, le=100_000)
    persist_stats: bool = Field(
        True, description="Keep per-tenant counters in Redis (totals across processes)."
    )
    stats_flush_interval: float = Field(
        1.0, ge=0.0, le=3600.0, description="Seconds between writes of the counters to Redis."
    )
    require_redis: bool = Field(
        False, description="Raise at construction when Redis is unreachable."
    )
    embedding_cache_size: int = Field(4096, ge=0, le=10_000_000)
    invalidate_batch: int = Field(500, ge=1, le=100_000)

    trace_key: SecretStr | None = Field(
        None,
        repr=False,
        description="A deployment secret (env SEMCACHE_TRACE_KEY): the tenant digest in "
        "spans, log lines and digest metric labels becomes HMAC-SHA256 under it, which "
        "nobody without it can match against candidate tenant ids. Redis keys keep the "
        "plain digest. None: spans carry the plain digest.",
    )

    @field_validator("trace_key")
    @classmethod
    def _check_trace_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "trace_key must be at least 16 characters (a random secret, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return value

    @property
    def trace_key_bytes(self) -> bytes | None:
        """``trace_key`` as HMAC key bytes (``None`` without one)."""
        if self.trace_key is None:
            return None
        return self.trace_key.get_secret_value().encode("utf-8", "surrogatepass")

    @field_validator("namespace", "key_prefix")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value) or value.startswith("__"):
            raise ValueError(
                f"{value!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit (it becomes part of Redis keys and the "
                "index name)"
            )
        return value

    @field_validator("default_tenant")
    @classmethod
    def _check_tenant(cls, value: str) -> str:
        return check_tenant_id(value)

    @model_validator(mode="after")
    def _check_promotion(self) -> CacheConfig:
        # An explicit promotion threshold below the threshold would let shadow tenants
        # serve more than live ones; the inherited default follows the threshold up.
        pt = self.promotion_threshold
        if (
            "promotion_threshold" in self.model_fields_set
            and pt is not None
            and pt < self.threshold
        ):
            raise ValueError(
                f"promotion_threshold {pt:g} is below threshold {self.threshold:g}: a shadow "
                "tenant would serve candidates a live one would not. Set "
                f"promotion_threshold >= {self.threshold:g}, or None to serve nothing in shadow"
            )
        return self


def check_tenant_id(value: object) -> str:
    """Validate a tenant id: any non-empty string (it is hashed before it reaches Redis)."""
    if not isinstance(value, str) or value == "":
        raise ConfigurationError(
            f"tenant id must be a non-empty string, got {value!r}; pass e.g. tenant('acme')"
        )
    return value


def build_config(base: CacheConfig | None = None, **overrides: Any) -> CacheConfig:
    """Merge explicit overrides onto a base config or the environment.

    Every override given wins, ``None`` included (``ttl=None`` means "never expire");
    callers leave out what the user did not set.

    Raises:
        ConfigurationError: a value is invalid; the message names the field and the fix.
    """
    given = overrides
    try:
        if base is None:
            return CacheConfig(**given)
        # Only what the base was given counts as given (the rest re-defaults identically),
        # so an inherited default stays distinguishable from an explicit setting.
        return CacheConfig(**{**base.model_dump(include=base.model_fields_set), **given})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "config"
            shown = "***" if field in _SECRET_FIELDS else repr(err.get("input"))
            lines.append(f"{field}: {err['msg']} (got {shown})")
        raise ConfigurationError(
            "invalid semcache configuration:\n  " + "\n  ".join(lines)
        ) from None


def check_ttl(value: object) -> None:
    """Validate a TTL given per request or per context: ``None`` (never expires) or a
    finite number of seconds in [0, `MAX_TTL`] (0: do not cache).

    Raises:
        ConfigurationError: anything else.
    """
    if value is None:
        return
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_TTL
    ):
        raise ConfigurationError(
            f"ttl must be None or a number of seconds between 0 and {MAX_TTL:.0f}, got {value!r}"
        )


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.query:
        # redis-py also reads ?password=... (and ?username=...) from the query string.
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = "&".join(
                f"{k}=***" if k.lower() == "password" else f"{k}={v}" for k, v in pairs
            )
            parts = parts._replace(query=query)
            url = urlunsplit(parts)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
