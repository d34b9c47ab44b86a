"""The exposition checked by the real tools: ``promtool check metrics``, and a real
Prometheus (Debian's ``prometheus`` package) scraping the exporter and answering every
PromQL expression of the Grafana dashboard. Needs ``promtool`` and ``prometheus`` on
PATH (``apt-get install -y prometheus``; .ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from semcache_core import CacheEngine
from semcache_core.http import serve_exporter
from semcache_core.prometheus import PrometheusMetrics, TotalsCollector
from tests.conftest import delete_totals, hashed_embedder
from tests.integration.test_metrics_exporter import exporter, fill

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "semcache.json"
SCRAPE_SECONDS = 1


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: apt-get install -y prometheus"
    return found


def promtool_check(text: str) -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("mode", ["off", "digest", "id"])
def test_promtool_accepts_the_exporter(
    redis_url: str,
    namespace: str,
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
    mode: str,
) -> None:
    fill(make_engine(embedder=hashed_embedder()))
    try:
        args = ("--redis-url", redis_url, "--namespace", namespace, "--tenant-label", mode)
        with exporter(*args) as (host, port):
            text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
        assert "semcache_tenant_requests_total" in text
        promtool_check(text)
    finally:
        delete_totals(raw_redis, "semcache", namespace)


def _traffic(engine: CacheEngine, round_: int) -> None:
    for tenant_id in ("acme", "globex"):
        for i in range(3):
            req = engine.request(f"round {round_} question {i}", tenant=tenant_id)
            if not engine.lookup(req).hit:
                engine.store(req, b"answer")
            assert engine.lookup(req).hit
    engine.invalidate(tenant="globex", tags=["none-has-this-tag"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.base}/api/v1/query", params={"query": expr}, timeout=10)
        body = reply.json()
        assert reply.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_scrapes(self, n: int, job: str = "semcache") -> None:
        """Wait until ``n`` more successful scrapes of ``job`` happened."""
        expr = f'count_over_time(up{{job="{job}"}}[5m])'

        def scrapes() -> int:
            found = self.query(expr)
            return int(float(found[0]["value"][1])) if found else 0

        target = scrapes() + n
        deadline = time.monotonic() + 60
        while scrapes() < target:
            assert time.monotonic() < deadline, "Prometheus stopped scraping"
            time.sleep(0.2)
        assert self.query(f'up{{job="{job}"}}')[0]["value"][1] == "1"


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], Prometheus]:
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_SECONDS}s\n"
        f"  evaluation_interval: {SCRAPE_SECONDS}s\n"
        "scrape_configs:\n"
        "  - job_name: semcache\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = _free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
        try:
            if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "Prometheus did not become ready"
        time.sleep(0.2)
    return proc, Prometheus(base)


@pytest.fixture
def prometheus_over_exporter(
    tmp_path: Path,
    namespace: str,
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
) -> Iterator[tuple[Prometheus, CacheEngine]]:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    engine = make_engine(embedder=hashed_embedder(), metrics=metrics, stats_flush_interval=0.0)
    registry.register(TotalsCollector(engine))
    server, _ = serve_exporter(engine, "127.0.0.1", 0, registry)
    proc, prom = start_prometheus(tmp_path, f"127.0.0.1:{server.server_address[1]}")
    try:
        promtool_check(generate_latest(registry).decode())
        yield prom, engine
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.shutdown()
        server.server_close()
        delete_totals(raw_redis, "semcache", namespace)


def dashboard_queries(namespace: str) -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            expr = expr.replace("$__rate_interval", "15s").replace("$__range", "5m")
            expr = expr.replace("$namespace", re.escape(namespace))
            assert "$" not in expr, expr  # every Grafana variable was substituted
            out.append((panel["title"], expr))
    return out


def test_dashboard_promql_against_a_real_prometheus(
    namespace: str, prometheus_over_exporter: tuple[Prometheus, CacheEngine]
) -> None:
    prom, engine = prometheus_over_exporter
    _traffic(engine, 0)
    prom.wait_scrapes(2)
    _traffic(engine, 1)
    engine.stats()  # flush the persisted totals before the next scrapes
    prom.wait_scrapes(3)

    answered: dict[str, list[dict[str, Any]]] = {}
    for title, expr in dashboard_queries(namespace):
        answered[title] = prom.query(expr)  # parses and evaluates, or the test fails
    # The panels that the traffic drives carry data, with the values it implies.
    nonempty = {title for title, result in answered.items() if result}
    queries = dict(dashboard_queries(namespace))
    for title in queries:
        if any(
            word in queries[title]
            for word in ("semcache_requests_total", "lookup_seconds", "stores_total")
        ):
            assert title in nonempty, (title, queries[title])
    hit_ratio = next(
        float(r[0]["value"][1])
        for t, r in answered.items()
        if r and "outcome=~" in queries[t] and " / " in queries[t]
    )
    assert hit_ratio == pytest.approx(0.5, abs=0.2)  # each question: one miss, one hit
    up = prom.query(f'semcache_totals_up{{namespace="{namespace}"}}')
    assert up and up[0]["value"][1] == "1"
