"""OpenTelemetry spans around lookup and store (the otel extra is installed for tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from semcache_core import CacheEngine, tracing
from semcache_core.request import tenant_digest
from tests.conftest import hashed_embedder
from tests.integration.drivers import Driver


class _Switch(SpanExporter):
    """Hands spans to the running test's exporter; drops them between tests (the global
    provider stays set for the rest of the session)."""

    target: InMemorySpanExporter | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.target is None:
            return SpanExportResult.SUCCESS
        return self.target.export(spans)


_SWITCH = _Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_SWITCH))
        trace.set_tracer_provider(provider)
    _SWITCH.target = exporter = InMemorySpanExporter()
    yield exporter
    _SWITCH.target = None
    exporter.shutdown()


def test_lookup_and_store_spans(
    spans: InMemorySpanExporter,
    make_engine: Callable[..., CacheEngine],
    namespace: str,
    driver: Driver,
) -> None:
    assert tracing.ENABLED
    engine = driver.make(make_engine, embedder=hashed_embedder())
    req = engine.request("traced question", tenant="acme")
    engine.lookup(req)
    engine.store(req, b"answer")
    engine.lookup(req)
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
