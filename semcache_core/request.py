"""What a cache request is, and the keys derived from it. Pure: no I/O.

A request has four parts (DESIGN.md section 2): the tenant; the scope, everything that
must be identical for any hit (model, generation parameters, system prompt, earlier
turns, tools); the question, the text that is embedded; and the full prompt. Every key
is a sha256 over canonical JSON with a version field, never a string concatenation.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import check_tenant_id, check_ttl
from .deadline import BudgetSlot
from .errors import ConfigurationError
from .tenancy import UNSET, _Unset

KEY_VERSION = 1
_DIGEST_CHARS = 32  # 128 bits: collisions are not a practical concern at any cache size


# What ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False)`` uses, made once (dumps makes one per call); encode() is stateless.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


_json_string = json.encoder.encode_basestring  # what _CANONICAL encodes a str with


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, fixed separators, lone surrogates kept."""
    return _CANONICAL.encode(value).encode("utf-8", "surrogatepass")


def digest(*parts: Any) -> str:
    """A hex digest of the canonical JSON of ``parts`` (domain-separated by the caller)."""
    return hashlib.sha256(canonical_json([KEY_VERSION, *parts])).hexdigest()[:_DIGEST_CHARS]


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]


def partition_digest(tenant_token: str, scope_token: str) -> str:
    """``digest("partition", tenant_token, scope_token)``, formatted directly: both are
    hex digests, JSON strings as they are."""
    return _hex(f'[{KEY_VERSION},"partition","{tenant_token}","{scope_token}"]')


def exact_digest(tenant_token: str, scope_token: str, prompt: str) -> str:
    """``digest("exact", tenant_token, scope_token, prompt)``, without walking a list:
    the tokens are hex digests (JSON strings as they are), the prompt is encoded once."""
    return _hex(f'[{KEY_VERSION},"exact","{tenant_token}","{scope_token}",{_json_string(prompt)}]')


@functools.lru_cache(maxsize=65_536)
def tenant_digest(tenant: str) -> str:
    """The token that stands for a tenant in keys and TAG fields (memoized: a tenant
    id hashes the same every time)."""
    return digest("tenant", tenant)


@functools.lru_cache(maxsize=65_536)
def keyed_tenant_digest(tenant: str, key: bytes) -> str:
    """The tenant digest semcache emits (span attributes, log lines, metric labels) when a
    deployment secret is set (``trace_key``): the first 32 hex digits of
    HMAC-SHA256(key, tenant id in UTF-8). Nobody without the key can test candidate ids
    against it, unlike `tenant_digest`, which stays what Redis keys use."""
    mac = hmac.new(key, tenant.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return mac.hexdigest()[:_DIGEST_CHARS]


def emitted_tenant_digest(tenant: str, key: bytes | None) -> str:
    """What stands for a tenant outside Redis: keyed under ``key`` when there is one,
    else the Redis keys' own `tenant_digest`."""
    return tenant_digest(tenant) if key is None else keyed_tenant_digest(tenant, key)


def tag_digest(tag: str) -> str:
    """The token that stands for a user tag in the TAG field."""
    return digest("tag", tag)


def scope_digest(scope: Mapping[str, Any]) -> str:
    """The token that stands for a scope (model, parameters, conversation so far)."""
    try:  # digest("scope", scope), without walking the outer list
        text = b'[%d,"scope",' % KEY_VERSION + canonical_json(scope) + b"]"
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"scope must be JSON-serializable (str keys, no NaN), got {scope!r}: {exc}"
        ) from exc
    return hashlib.sha256(text).hexdigest()[:_DIGEST_CHARS]


@dataclass(frozen=True)
class CacheRequest:
    """One question to the cache, with every key it needs.

    Build it with `CacheRequest.build` (or `CacheEngine.request`), which validates the
    parts and derives the digests once.
    """

    tenant: str
    namespace: str
    prompt: str
    question: str | None
    scope: Mapping[str, Any]
    tags: tuple[str, ...]
    ttl: float | _Unset | None
    tenant_token: str = field(repr=False)
    scope_token: str = field(repr=False)
    partition: str = field(repr=False)
    exact_key: str = field(repr=False)
    kind: str = ""  # what sort of request ("chat", "structured"...): policies can key on it
    # The question's embedding, by embedder: a lookup's vector serves the store of the
    # same request (its miss), so each request is embedded at most once. Not an input:
    # `dataclasses.replace` starts empty.
    vectors: dict[Any, list[float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # The Redis wait its latest lookup left for its store (`deadline.store_budget`).
    budget: BudgetSlot = field(default_factory=BudgetSlot, init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        tenant: str,
        namespace: str,
        prompt: str,
        question: str | None = None,
        scope: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        ttl: float | _Unset | None = UNSET,
        kind: str = "",
    ) -> CacheRequest:
        """Validate the parts of a request and derive its keys.

        Args:
            tenant: who is asking.
            namespace: the engine's namespace.
            prompt: the full prompt; identical prompts (and scope) are exact hits.
            question: the text to embed for the semantic layer; ``None`` or empty
                disables the semantic layer for this request.
            scope: everything that must match exactly for any hit.
            tags: labels stored with the entry.
            ttl: per-entry TTL override (see `CacheConfig`).
            kind: the sort of request, e.g. ``"structured"``; ``exact_only_kinds``
                keeps some kinds out of the semantic layer.

        Raises:
            ConfigurationError: a part has the wrong type or cannot be hashed.
        """
        check_tenant_id(tenant)
        if not isinstance(ttl, _Unset):
            check_ttl(ttl)
        if not isinstance(prompt, str):
            raise ConfigurationError(f"prompt must be a string, got {type(prompt).__name__}")
        if question is not None and not isinstance(question, str):
            raise ConfigurationError(
                f"question must be a string or None, got {type(question).__name__}"
            )
        scope = dict(scope or {})
        s_token = scope_digest(scope)
        t_token = tenant_digest(tenant)
        # What the frozen dataclass's __init__ would set (it costs a setattr per field):
        # every field, the derived ones included, so the instance is the same.
        request = object.__new__(cls)
        request.__dict__.update(
            tenant=tenant,
            namespace=namespace,
            prompt=prompt,
            question=question if question and question.strip() else None,
            scope=scope,
            tags=tuple(dict.fromkeys(tags)),
            ttl=ttl,
            tenant_token=t_token,
            scope_token=s_token,
            partition=partition_digest(t_token, s_token),
            # The namespace is in the key's prefix, not here: an exported entry can be
            # imported into another namespace and still be found.
            exact_key=exact_digest(t_token, s_token, prompt),
            kind=kind,
            vectors={},
            budget=BudgetSlot(),
        )
        return request
