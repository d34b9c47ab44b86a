"""OpenTelemetry spans around lookup and store (the otel extra is installed for tests)."""

from __future__ import annotations

import hashlib
import hmac
import logging
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


def keyed(key: str, tenant: str) -> str:
    """The keyed tenant digest as README documents it, computed independently."""
    mac = hmac.new(key.encode(), tenant.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return mac.hexdigest()[:32]


TRACE_KEY = "deployment-secret-4f1b"


def _attrs_and_text(spans: InMemorySpanExporter) -> tuple[list[dict[str, object]], str]:
    finished = spans.get_finished_spans()
    return [dict(s.attributes or {}) for s in finished], "\n".join(s.to_json() for s in finished)


def test_a_trace_key_makes_the_span_digest_keyed(
    spans: InMemorySpanExporter,
    make_engine: Callable[..., CacheEngine],
    driver: Driver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """customer-48151's plain digest can be found by hashing candidate ids; under a
    deployment secret (``trace_key``) the span carries HMAC-SHA256 instead, and neither
    the secret nor the plain digest appears in a span or a log line."""
    engine = driver.make(make_engine, embedder=hashed_embedder(), trace_key=TRACE_KEY)
    assert TRACE_KEY not in repr(engine.config)
    req = engine.request("traced question", tenant="customer-48151")
    engine.lookup(req)
    engine.store(req, b"answer")
    engine.lookup(req)
    with caplog.at_level(logging.WARNING, logger="semcache"):
        engine.engine._store.client.hdel(engine.key(req), "v")  # unreadable now
        assert engine.lookup(req).outcome.value == "miss"  # the corrupt entry is deleted
    assert "corrupt" in caplog.text
    attrs, text = _attrs_and_text(spans)
    assert len(attrs) == 4
    plain = tenant_digest("customer-48151")
    for a in attrs:
        assert a["semcache.tenant_digest"] == keyed(TRACE_KEY, "customer-48151") != plain
    for emitted in (text, caplog.text):
        assert TRACE_KEY not in emitted and plain not in emitted
        assert "customer-48151" not in emitted
    assert keyed(TRACE_KEY, "customer-48151") in caplog.text  # the log names the entry so
    # Redis keys keep the plain digest: existing entries stay where they are.
    assert plain in engine.key(req)


def test_without_a_trace_key_the_span_digest_is_the_key_digest(
    spans: InMemorySpanExporter, make_engine: Callable[..., CacheEngine], driver: Driver
) -> None:
    engine = driver.make(make_engine, embedder=hashed_embedder())
    engine.lookup(engine.request("traced question", tenant="customer-48151"))
    attrs, _ = _attrs_and_text(spans)
    assert attrs[0]["semcache.tenant_digest"] == tenant_digest("customer-48151")
