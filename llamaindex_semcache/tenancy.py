"""Who is asking, for calls that go through LlamaIndex.

A server rarely wraps each request's query engine or agent run in
``with semcache_core.tenant(...)``; LlamaIndex code already carries per-request labels in
its instrumentation tags (``llama_index.core.instrumentation.instrument_tags``), which
LlamaIndex workflows (``FunctionAgent``, ``AgentWorkflow``) copy into every step. The
wrappers read the tenant from the tag `TENANT_TAG` (``"semcache_tenant"``) when it is
there.

Precedence, per call: a fixed ``tenant=`` on the wrapper; else the tag and
``semcache_core.tenant`` (which must agree when both are set); else the engine's
``default_tenant``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llama_index_instrumentation.dispatcher import active_instrument_tags, instrument_tags

from semcache_core.config import check_tenant_id
from semcache_core.errors import ConfigurationError
from semcache_core.tenancy import current_tenant

#: The instrumentation tag that names the tenant of a LlamaIndex call.
TENANT_TAG = "semcache_tenant"


def tagged_tenant() -> str | None:
    """The tenant named by the active instrumentation tags, or ``None``.

    Raises:
        ConfigurationError: the tag is set to something that is not a non-empty string.
    """
    tags: Any = active_instrument_tags.get()
    if not isinstance(tags, dict) or TENANT_TAG not in tags:
        return None
    value = tags[TENANT_TAG]
    if not isinstance(value, str) or value == "":
        raise ConfigurationError(
            f"instrument tag {TENANT_TAG!r} must be a non-empty string tenant id, got "
            f"{value!r}; e.g. with instrument_tags({{{TENANT_TAG!r}: 'acme'}})"
        )
    return value


def call_tenant(fixed: str | None) -> str | None:
    """The tenant for a call made now: ``fixed``, else the tag or the `tenant` context
    (``None``: the engine's default tenant).

    Raises:
        ConfigurationError: the tag is invalid, or it and ``semcache_core.tenant`` name
            different tenants (which one is meant cannot be guessed safely).
    """
    if fixed is not None:
        return fixed
    tagged = tagged_tenant()
    if tagged is None:
        return None
    context = current_tenant()
    if context is not None and context != tagged:
        raise ConfigurationError(
            f"the instrument tag {TENANT_TAG!r} says tenant {tagged!r} but "
            f"semcache_core.tenant() says {context!r}; set one of them"
        )
    return tagged


@contextmanager
def instrument_tenant(tenant_id: str) -> Iterator[None]:
    """Tag LlamaIndex calls made inside the block with ``tenant_id``.

    The same as ``instrument_tags({"semcache_tenant": tenant_id})``, except that it
    validates the id now and keeps the tags already active (``instrument_tags``
    replaces them).

    Raises:
        ConfigurationError: ``tenant_id`` is not a non-empty string.

    Example:
        >>> with instrument_tenant("acme"):
        ...     await agent.run(user_msg="Where is my order?")
    """
    check_tenant_id(tenant_id)
    with instrument_tags({**active_instrument_tags.get(), TENANT_TAG: tenant_id}):
        yield


__all__ = ["TENANT_TAG", "call_tenant", "instrument_tenant", "tagged_tenant"]
