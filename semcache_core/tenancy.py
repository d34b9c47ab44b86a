"""The current tenant and per-request cache options, carried in a context variable.

LangChain's ``BaseCache`` only sees ``(prompt, llm_string)``, so who is asking travels
beside the call. Context variables are per thread and copied into each asyncio task, so
``with tenant("acme"):`` is safe in threads and tasks alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .config import check_tenant_id
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .config import CacheConfig
    from .request import CacheRequest


class _Unset:
    """Marker for "not given" where ``None`` is a meaningful value (``ttl=None``)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@dataclass(frozen=True)
class RequestContext:
    """Options that apply to every cache request made inside a `cache_context`."""

    tenant: str | None = None
    tags: tuple[str, ...] = ()
    ttl: float | _Unset | None = UNSET
    scope: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    semantic: bool | None = None
    question: str | None = None


_EMPTY = RequestContext()
_current: ContextVar[RequestContext] = ContextVar("semcache_context", default=_EMPTY)


def current_context() -> RequestContext:
    """The options in force for this thread or task."""
    return _current.get()


def current_tenant() -> str | None:
    """The tenant set by the innermost `tenant` / `cache_context`, or ``None``."""
    return _current.get().tenant


@contextmanager
def cache_context(
    *,
    tenant: str | None = None,
    tags: Sequence[str] | None = None,
    ttl: float | _Unset | None = UNSET,
    scope: Mapping[str, Any] | None = None,
    semantic: bool | None = None,
    question: str | None = None,
) -> Iterator[RequestContext]:
    """Set the tenant, tags, TTL and extra scope for cache requests made inside the block.

    Nested blocks inherit from outer ones: tags and scope are merged, tenant and TTL are
    replaced when given.

    Args:
        tenant: who is asking; entries of other tenants are never served.
        tags: labels stored with new entries, for invalidation by tag.
        ttl: TTL in seconds for entries written inside the block (see `CacheConfig`).
        scope: extra context that must match exactly for a hit (conversation id, persona).
        semantic: ``False`` makes requests inside the block exact-only (no embedding, no
            semantic hit); ``True`` re-enables it inside an outer ``False`` block.
        question: the user's own text inside a templated prompt. Only it is embedded and
            compared; the rest of the prompt (the template) must match exactly. A request
            whose question does not contain it is exact-only.

    Example:
        >>> with cache_context(tenant="acme", tags=["faq"], scope={"persona": "pirate"}):
        ...     pass
    """
    outer = _current.get()
    if tenant is not None:
        check_tenant_id(tenant)
    if ttl is not UNSET:
        from .config import check_ttl

        check_ttl(ttl)
    if semantic is not None and not isinstance(semantic, bool):
        raise ConfigurationError(f"semantic must be True, False or None, got {semantic!r}")
    if question is not None and (not isinstance(question, str) or not question.strip()):
        raise ConfigurationError(f"question must be a non-empty string, got {question!r}")
    if scope is not None:
        if not isinstance(scope, Mapping):
            raise ConfigurationError(f"scope must be a mapping, got {type(scope).__name__}")
        from .request import scope_digest  # request.py imports this module

        scope_digest({**outer.scope, **scope})  # JSON-serializable, str keys, no NaN
    merged_tags = outer.tags + tuple(t for t in (tags or ()) if t not in outer.tags)
    for t in merged_tags:
        if not isinstance(t, str):
            raise ConfigurationError(f"tags must be strings, got {t!r}")
    new = RequestContext(
        tenant=tenant if tenant is not None else outer.tenant,
        tags=merged_tags,
        ttl=ttl if ttl is not UNSET else outer.ttl,
        scope=MappingProxyType({**outer.scope, **(scope or {})}),
        semantic=semantic if semantic is not None else outer.semantic,
        question=question if question is not None else outer.question,
    )
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)


@contextmanager
def tenant(tenant_id: str) -> Iterator[RequestContext]:
    """Make ``tenant_id`` the current tenant inside the block.

    Args:
        tenant_id: any non-empty string; it is hashed before it reaches Redis.

    Example:
        >>> with tenant("acme"):
        ...     pass  # model.invoke(...) here reads and writes acme's entries only
    """
    with cache_context(tenant=tenant_id) as ctx:
        yield ctx


def build_request(
    config: CacheConfig,
    prompt: str,
    question: str | None,
    scope: Mapping[str, Any] | None,
    tenant: str | None,
    tags: Sequence[str] | None,
    *,
    ttl: Any = UNSET,
    kind: str = "",
) -> CacheRequest:
    """`CacheEngine.request`: a request with tenant, tags, TTL and scope filled from the
    current `cache_context` (see there)."""
    from .request import CacheRequest

    ctx = current_context()
    merged_scope = dict(scope or {})
    if ctx.scope:
        merged_scope["context"] = dict(ctx.scope)
    embedded = prompt if question is None else question
    if ctx.semantic is False:
        embedded = ""
    elif ctx.question is not None and embedded:
        if ctx.question in embedded:
            merged_scope["template"] = embedded.replace(ctx.question, "\x00")
            embedded = ctx.question
        else:
            embedded = ""  # the declared question is not in this request: exact only
    return CacheRequest.build(
        # An explicit tenant is checked, never replaced: "" is an error, not the default.
        tenant=tenant if tenant is not None else ctx.tenant or config.default_tenant,
        namespace=config.namespace,
        prompt=prompt,
        question=embedded,
        scope=merged_scope,
        tags=tuple(ctx.tags) + tuple(t for t in (tags or ()) if t not in ctx.tags),
        ttl=ttl if ttl is not UNSET else ctx.ttl,
        kind=kind,
    )
