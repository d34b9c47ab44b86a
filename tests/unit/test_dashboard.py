"""The Grafana dashboard only uses metric names semcache exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from semcache_core.core.rules import Outcome
from semcache_core.prometheus import PrometheusMetrics, TotalsCollector

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "semcache.json"


class _FakeEngine:
    class config:
        namespace = "ns"

    def stats(self, totals: bool = True) -> dict[str, object]:
        return {"totals": {"acme": {"requests": 1}}}


def test_every_metric_in_the_dashboard_exists() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.lookup("ns", "t", Outcome.SEMANTIC_HIT, 0.01, 0.95)
    metrics.count("ns", "t", "stores", 1)
    metrics.count("ns", "t", "verdicts_agreed", 1)
    metrics.error("ns", "lookup")
    metrics.invalidated_entries("ns", 1)
    metrics.saved("ns", "t", 10, 0.01)
    registry.register(TotalsCollector(_FakeEngine()))
    exported = set(re.findall(r"^(semcache_\w+)", generate_latest(registry).decode(), re.M))

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\b(semcache_\w+)", e)}
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
