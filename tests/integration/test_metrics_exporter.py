"""`semcache metrics` as a real process, and the statistics routes over real HTTP."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from semcache_core import CacheEngine
from semcache_core.http import statistics_app
from semcache_core.request import tenant_digest
from tests.conftest import delete_totals, hashed_embedder

ROOT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(r"on http://(?P<host>[^:/\s]+|\[[^\]]+\]):(?P<port>\d+)/metrics")


def fill(engine: CacheEngine) -> None:
    """acme: 4 writes, 1 exact hit in 5 lookups; globex: 2 writes, 2 exact hits in 4."""
    for tenant_id, n, repeats in (("acme", 4, 1), ("globex", 2, 2)):
        for i in range(n):
            req = engine.request(f"question {i}", tenant=tenant_id)
            if not engine.lookup(req).hit:
                engine.store(req, f"answer {i} for {tenant_id}".encode())
        for i in range(repeats):
            assert engine.lookup(engine.request(f"question {i}", tenant=tenant_id)).hit
    engine.close()  # flushes the counters


@pytest.fixture
def filled(
    redis_url: str, namespace: str, make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis
) -> Iterator[CacheEngine]:
    fill(make_engine(embedder=hashed_embedder()))
    reader = make_engine(embedder=hashed_embedder(), validate=False)
    yield reader
    delete_totals(raw_redis, "semcache", namespace)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "semcache_core.cli", *args]


@contextmanager
def exporter(*args: str) -> Iterator[tuple[str, int]]:
    """Run ``semcache metrics --port 0 ARGS``; yield the (host, port) it printed."""
    proc = subprocess.Popen(
        cli("metrics", "--port", "0", *args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = _SERVING.search(line)
        if found is None:
            proc.terminate()
            raise AssertionError(f"no address printed: {line!r} {proc.communicate(timeout=30)}")
        yield found["host"], int(found["port"])
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def scrape(host: str, port: int) -> dict[str, list[Any]]:
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_exporter_binds_loopback_and_labels_no_tenant_by_default(
    redis_url: str, namespace: str, filled: CacheEngine
) -> None:
    with exporter("--redis-url", redis_url, "--namespace", namespace) as (host, port):
        assert host == "127.0.0.1"
        families = scrape(host, port)
        requests = families["semcache_tenant_requests"]
        assert [s.labels for s in requests] == [{"namespace": namespace}]
        assert requests[0].value == 9  # acme 5 + globex 4, summed
        assert families["semcache_totals_up"][0].value == 1
        assert "acme" not in httpx.get(f"http://{host}:{port}/metrics", timeout=10).text


@pytest.mark.parametrize("mode", ["digest", "id"])
def test_exporter_tenant_label_is_opt_in(
    redis_url: str, namespace: str, filled: CacheEngine, mode: str
) -> None:
    args = ("--redis-url", redis_url, "--namespace", namespace, "--tenant-label", mode)
    with exporter(*args) as (host, port):
        samples = scrape(host, port)["semcache_tenant_requests"]
    by_tenant = {s.labels["tenant"]: s.value for s in samples}
    label = tenant_digest if mode == "digest" else str
    assert by_tenant == {label("acme"): 5, label("globex"): 4}


def test_exporter_host_option(redis_url: str, namespace: str, filled: CacheEngine) -> None:
    with exporter("--host", "127.0.0.2", "--redis-url", redis_url, "--namespace", namespace) as (
        host,
        port,
    ):
        assert host == "127.0.0.2"
        assert scrape(host, port)["semcache_totals_up"][0].value == 1
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_exporter_fails_at_once_when_redis_does_not_answer() -> None:
    """A port that accepts and never answers (the hard case: a refused connection fails
    by itself): one connection attempt, one error line, exit 1; no retry loop, no
    server left serving."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        result = subprocess.run(
            cli(
                "metrics",
                "--port",
                "0",
                "--redis-url",
                f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        silent.setblocking(False)
        attempts = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, _ = silent.accept()
                conn.close()
                attempts += 1
    assert result.returncode == 1
    assert attempts == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Serving" not in result.stdout


def test_exporter_fails_when_the_port_is_taken(redis_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            cli("metrics", "--port", str(port), "--redis-url", redis_url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


# -- statistics over HTTP ---------------------------------------------------------------------
def expected(totals: dict[str, dict[str, Any]], tenant: str | None) -> dict[str, Any]:
    views = [totals[tenant]] if tenant else list(totals.values())

    def total(name: str) -> Any:
        return sum(v[name] for v in views)

    hits = total("exact_hits") + total("semantic_hits") + total("promoted")
    return {
        "requests": total("requests"),
        "hits": hits,
        "misses": total("misses"),
        "writes": total("stores"),
        "tokens_saved": total("tokens_saved"),
        "cost_saved_usd": pytest.approx(total("cost_saved_usd")),
        "hit_rate": pytest.approx(hits / total("requests")),
        "entries": total("entries"),
    }


def check_statistics(base: str, engine: CacheEngine) -> None:
    totals = engine.stats()["totals"]
    assert set(totals) == {"acme", "globex"}
    for tenant in (None, "acme", "globex"):
        params = {"tenant": tenant} if tenant else {}
        body = httpx.get(base, params=params, timeout=10).json()
        assert body["namespace"] == engine.config.namespace and body["tenant"] == tenant
        assert {k: body[k] for k in expected(totals, tenant)} == expected(totals, tenant)
        exact = httpx.get(f"{base}/exact", params=params, timeout=10).json()
        want = expected(totals, tenant)
        assert exact["layer"] == "exact" and exact["hits"] == want["hits"]  # no semantic hits
        semantic = httpx.get(f"{base}/semantic", params=params, timeout=10).json()
        assert semantic["layer"] == "semantic" and semantic["hits"] == 0
    acme = httpx.get(base, params={"tenant": "acme"}, timeout=10).json()
    assert (acme["requests"], acme["hits"], acme["misses"], acme["writes"]) == (5, 1, 4, 4)
    nobody = httpx.get(base, params={"tenant": "nobody"}, timeout=10).json()
    assert nobody["requests"] == 0 and nobody["hit_rate"] == 0.0
    missing = httpx.get(f"{base}/bogus", timeout=10)
    assert missing.status_code == 404 and "exact, semantic" in missing.json()["error"]


def test_exporter_serves_statistics_equal_to_stats(
    redis_url: str, namespace: str, filled: CacheEngine
) -> None:
    with exporter("--redis-url", redis_url, "--namespace", namespace) as (host, port):
        check_statistics(f"http://{host}:{port}/metrics/cache/statistics", filled)
        assert httpx.get(f"http://{host}:{port}/", timeout=10).status_code == 404


@contextmanager
def uvicorn_server(app: Any) -> Iterator[int]:
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_statistics_app_under_uvicorn(filled: CacheEngine) -> None:
    with uvicorn_server(statistics_app(filled)) as port:
        check_statistics(f"http://127.0.0.1:{port}/metrics/cache/statistics", filled)
        root = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert root.status_code == 200 and root.json()["requests"] == 9  # mountable at "/"
        assert httpx.post(f"http://127.0.0.1:{port}/", timeout=10).status_code == 405


def test_statistics_app_reports_503_when_redis_is_down() -> None:
    engine = CacheEngine(
        f"redis://127.0.0.1:{_closed_port()}/0", embedder=hashed_embedder(), validate=False
    )
    try:
        with uvicorn_server(statistics_app(engine)) as port:
            reply = httpx.get(f"http://127.0.0.1:{port}/metrics/cache/statistics", timeout=30)
        assert reply.status_code == 503 and "Redis unavailable" in reply.json()["error"]
    finally:
        engine.close()
