"""OpenTelemetry spans around lookup and store: ``semcache.lookup``, ``semcache.store``.

Optional: with ``pip install "semcache[otel]"`` (opentelemetry-api) and a tracer provider
configured by the application, every lookup and store is a span with the namespace, the
outcome, the similarity and whether it was served. Without opentelemetry this module
is a no-op costing one attribute check. Tenant ids are not recorded (they may be
personal data); the tenant digest is: the plain one of Redis keys, which candidate ids
can be tested against, or, with a deployment secret (``trace_key``), HMAC-SHA256 under
it (`semcache_core.request.keyed_tenant_digest`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

_trace: Any
try:
    _trace = importlib.import_module("opentelemetry.trace")
except ImportError:  # the extra is not installed: spans are no-ops
    _trace = None

ENABLED = _trace is not None
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def tracer() -> Any:
    """The semcache tracer, or ``None`` without opentelemetry."""
    return _trace.get_tracer("semcache") if _trace is not None else None


def mark_error(span: Any, description: str) -> None:
    """Give a span the ERROR status (a lookup that failed open, a store that failed)."""
    if _trace is not None:
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, description))


_UNKNOWN = object()
_recording = False  # a recording provider was seen (the global one is set only once)


def active() -> bool:
    """Whether a span would be recorded: opentelemetry is installed and the application
    configured a tracer provider (the API's default proxy and no-op providers record
    nothing, so the hot path skips making their spans)."""
    global _recording
    if _recording:
        return True
    if _trace is None:
        return False
    # Nothing set yet (and none named by the environment): nothing records. Checked
    # without get_tracer_provider, which reads os.environ on every call.
    if getattr(_trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _ENV_PROVIDER:
        return False
    provider = _trace.get_tracer_provider()
    _recording = not isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider))
    return _recording


def start_span(name: str, attributes: dict[str, Any]) -> Any:
    """A context manager for a span (``None`` when opentelemetry is absent)."""
    t = tracer()
    if t is None:
        return None
    return t.start_as_current_span(name, attributes=attributes)
