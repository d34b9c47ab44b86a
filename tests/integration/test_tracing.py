"""OpenTelemetry spans around lookup and store (the otel extra is installed for tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from semcache_core import CacheEngine, tracing
from semcache_core.request import tenant_digest
from tests.conftest import hashed_embedder

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
    _EXPORTER.shutdown()  # the global provider stays; later tests' spans are dropped


async def test_lookup_and_store_spans(
    spans: InMemorySpanExporter, make_engine: Callable[..., CacheEngine], namespace: str
) -> None:
    assert tracing.ENABLED
    engine = make_engine(embedder=hashed_embedder())
    req = engine.request("traced question", tenant="acme")
    engine.lookup(req)
    engine.store(req, b"answer")
    await engine.alookup(req)
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["semcache.lookup", "semcache.store", "semcache.lookup"]
    miss, store, hit = (dict(s.attributes or {}) for s in finished)
    assert miss["semcache.outcome"] == "miss" and miss["semcache.hit"] is False
    assert store["semcache.stored"] is True
    assert hit["semcache.outcome"] == "exact_hit" and hit["semcache.similarity"] == 1.0
    for attrs in (miss, store, hit):
        assert attrs["semcache.namespace"] == namespace
        assert attrs["semcache.tenant_digest"] == tenant_digest("acme")
        assert "acme" not in attrs.values()  # raw tenant ids stay out of traces
    assert all(s.status.status_code is StatusCode.UNSET for s in finished)

    def broken(payload: bytes, codec: str) -> bytes:
        raise TypeError("the framework changed")

    assert engine.lookup(req, broken).outcome.value == "error"
    failed = spans.get_finished_spans()[-1]
    assert failed.name == "semcache.lookup" and failed.status.status_code is StatusCode.ERROR
