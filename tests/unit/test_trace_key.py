"""The keyed tenant digest (``trace_key``): metric labels and the setting itself. The
spans and log lines: tests/integration/test_tracing.py."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from prometheus_client import CollectorRegistry

from semcache_core import ConfigurationError, Outcome, PrometheusMetrics
from semcache_core.config import CacheConfig, build_config
from semcache_core.request import emitted_tenant_digest, keyed_tenant_digest, tenant_digest

KEY = "deployment-secret-4f1b"


def _expected(key: str, tenant: str) -> str:
    return hmac.new(key.encode(), tenant.encode(), hashlib.sha256).hexdigest()[:32]


def _labels(metrics: PrometheusMetrics) -> set[str]:
    metrics.lookup("ns", "customer-48151", Outcome.MISS, 0.001, None)
    return {
        sample.labels["tenant"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if "tenant" in sample.labels
    }


def test_the_keyed_digest_is_hmac_sha256_and_not_the_key_digest() -> None:
    assert keyed_tenant_digest("customer-48151", KEY.encode()) == _expected(KEY, "customer-48151")
    assert keyed_tenant_digest("customer-48151", KEY.encode()) != tenant_digest("customer-48151")
    assert emitted_tenant_digest("customer-48151", None) == tenant_digest("customer-48151")


def test_digest_metric_labels_are_keyed_under_the_trace_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEMCACHE_TRACE_KEY", raising=False)
    plain = PrometheusMetrics(CollectorRegistry(), tenant_label="digest")
    assert _labels(plain) == {tenant_digest("customer-48151")}
    given = PrometheusMetrics(CollectorRegistry(), tenant_label="digest", trace_key=KEY)
    assert _labels(given) == {_expected(KEY, "customer-48151")}
    monkeypatch.setenv("SEMCACHE_TRACE_KEY", KEY)
    from_env = PrometheusMetrics(CollectorRegistry(), tenant_label="digest")
    assert _labels(from_env) == {_expected(KEY, "customer-48151")}
    by_id = PrometheusMetrics(CollectorRegistry(), tenant_label="id")
    assert _labels(by_id) == {"customer-48151"}  # the id mode says what it says


def test_the_trace_key_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(None, trace_key=KEY)
    assert config.trace_key_bytes == KEY.encode()
    assert KEY not in repr(config) and KEY not in str(config.model_dump())
    monkeypatch.setenv("SEMCACHE_TRACE_KEY", KEY)
    assert CacheConfig().trace_key_bytes == KEY.encode()
    with pytest.raises(ConfigurationError) as info:
        build_config(None, trace_key="short-secret")
    assert "at least 16" in str(info.value) and "short-secret" not in str(info.value)


def test_the_totals_exporter_keys_its_digest_labels() -> None:
    """`semcache metrics --tenant-label digest` (TotalsCollector) under the engine's key."""
    from prometheus_client import generate_latest

    from semcache_core.prometheus import TotalsCollector

    class Engine:
        config = build_config(None, namespace="ns", trace_key=KEY)

        def stats(self, totals: bool = True) -> dict[str, object]:
            return {"totals": {"customer-48151": {"requests": 1}}}

    registry = CollectorRegistry()
    registry.register(TotalsCollector(Engine(), tenant_label="digest"))
    text = generate_latest(registry).decode()
    assert _expected(KEY, "customer-48151") in text
    assert tenant_digest("customer-48151") not in text and KEY not in text
