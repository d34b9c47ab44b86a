"""How the LlamaIndex wrappers get their `CacheEngine`: a shared one (``engine=``) or
one they build from engine settings, never both."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from semcache_core.config import CacheConfig
from semcache_core.engine import CacheEngine
from semcache_core.errors import ConfigurationError
from semcache_core.tenancy import UNSET

#: `CacheEngine` arguments that are not `CacheConfig` fields.
ENGINE_ARGUMENTS: frozenset[str] = frozenset({"judge", "verifier", "metrics", "prices"})


def engine_settings() -> frozenset[str]:
    """Every engine setting a wrapper accepts when it builds the engine: the
    `CacheConfig` fields, ``embed_model`` and the engine's other arguments."""
    return frozenset(CacheConfig.model_fields) | ENGINE_ARGUMENTS | {"embed_model"}


def _unknown(names: Iterable[str], what: str, known: Iterable[str]) -> ConfigurationError:
    pool = sorted(known)
    hints = [
        f"{name!r} (did you mean {close[0]!r}?)"
        if (close := difflib.get_close_matches(name, pool, n=1))
        else repr(name)
        for name in sorted(names)
    ]
    return ConfigurationError(
        f"{what} got unknown argument(s) {', '.join(hints)}; engine settings are the "
        "CacheConfig fields plus embed_model, judge, verifier, metrics and prices"
    )


def legacy_embedder(embed_model: Any, embedder: Any, what: str) -> Any:
    """``embed_model``, or the deprecated ``embedder`` spelling of it."""
    if embedder is None:
        return embed_model
    if embed_model is not None:
        raise ConfigurationError(f"{what}: pass embed_model= only (embedder= is its old name)")
    warnings.warn(
        f"{what}(embedder=...) is deprecated; pass embed_model=..., as in LlamaIndex",
        DeprecationWarning,
        stacklevel=3,
    )
    return embedder


def build_engine(
    engine: CacheEngine | None,
    settings: Mapping[str, Any],
    what: str,
    *,
    allowed: Iterable[str] = (),
) -> CacheEngine:
    """``engine`` itself, or a new `CacheEngine` built from ``settings``.

    Args:
        engine: a shared engine; then ``settings`` must hold nothing.
        settings: engine settings given by the user (``redis_url``, ``embed_model``,
            ``threshold``, ``namespace``, ``ttl``, any `CacheConfig` field, ``judge``,
            ``verifier``, ``metrics``, ``prices``); ``None`` values count as not given,
            except ``ttl=None`` (never expire).
        what: names the caller in error messages.
        allowed: other argument names the caller takes, for the unknown-argument message.

    Raises:
        ConfigurationError: both an engine and settings, an unknown setting, or an
            invalid value.
    """
    known = engine_settings()
    unknown = [name for name in settings if name not in known]
    if "embedder" in unknown:
        raise ConfigurationError(f"{what}: the embedding model is embed_model=, not embedder=")
    if unknown:
        raise _unknown(unknown, what, {*known, *allowed, "engine"})
    given = {k: v for k, v in settings.items() if v is not None or k == "ttl"}
    given = {k: v for k, v in given.items() if v is not UNSET}
    if engine is not None:
        if not isinstance(engine, CacheEngine):
            raise ConfigurationError(f"engine must be a CacheEngine, got {type(engine).__name__}")
        if given:
            raise ConfigurationError(
                f"{what}: pass either engine= or engine settings, not both (got "
                f"{sorted(given)}); a shared engine keeps its own settings: set them on "
                "the CacheEngine where it is built (CacheEngine(url, embedder=..., "
                "threshold=..., namespace=...)), or drop engine= and let "
                f"{what} build one"
            )
        return engine
    options = dict(given)
    embed_model = options.pop("embed_model", None)
    ttl = options.pop("ttl", UNSET)
    return CacheEngine(embedder=embed_model, ttl=ttl, **options)


__all__ = ["ENGINE_ARGUMENTS", "build_engine", "engine_settings", "legacy_embedder"]
