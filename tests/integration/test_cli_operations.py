"""`semcache stats|invalidate|export|import` and the totals collector, on the embedded Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from semcache_core import CacheEngine, Outcome
from semcache_core.cli import app
from semcache_core.prometheus import TotalsCollector
from tests.conftest import delete_totals, hashed_embedder

runner = CliRunner()


def _fill(engine: CacheEngine) -> None:
    for t in ("acme", "globex"):
        for i in range(4):
            req = engine.request(f"question {i}", tenant=t, tags=["faq"] if i % 2 else ["misc"])
            if not engine.lookup(req).hit:
                engine.store(req, f"answer {i} for {t}".encode())
        engine.lookup(engine.request("question 0", tenant=t))


def _args(redis_url: str, namespace: str) -> list[str]:
    return ["--redis-url", redis_url, "--namespace", namespace]


def test_stats_and_invalidate(
    redis_url: str,
    namespace: str,
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
) -> None:
    engine = make_engine(embedder=hashed_embedder())
    try:
        _fill(engine)
        engine.close()  # flushes the counters
        result = runner.invoke(app, ["stats", *_args(redis_url, namespace)])
        assert result.exit_code == 0, result.output
        assert "acme" in result.stdout and "globex" in result.stdout
        assert "20.0%" in result.stdout  # 1 hit in 5 requests per tenant
        assert "Index: 8 entries" in result.stdout

        result = runner.invoke(
            app, ["invalidate", "--tenant", "acme", "--tag", "faq", *_args(redis_url, namespace)]
        )
        assert result.exit_code == 0 and "Deleted 2 entries" in result.stdout
        result = runner.invoke(
            app, ["invalidate", "--all", *_args(redis_url, namespace)], input="n\n"
        )
        assert result.exit_code == 1  # declined: nothing deleted
        result = runner.invoke(app, ["invalidate", "--all", "--yes", *_args(redis_url, namespace)])
        assert result.exit_code == 0 and "Deleted 6 entries" in result.stdout
        result = runner.invoke(app, ["invalidate", *_args(redis_url, namespace)])
        assert result.exit_code == 1 and "say what to invalidate" in result.stderr
    finally:
        delete_totals(raw_redis, "semcache", namespace)


def test_export_then_import_gives_the_same_lookups(
    redis_url: str,
    namespace: str,
    make_engine: Callable[..., CacheEngine],
    tmp_path: Path,
) -> None:
    source = make_engine(embedder=hashed_embedder(), threshold=0.99)
    _fill(source)
    dump = tmp_path / "entries.jsonl"
    result = runner.invoke(app, ["export", str(dump), *_args(redis_url, namespace)])
    assert result.exit_code == 0, result.output
    assert len(dump.read_text().splitlines()) == 8

    target_ns = f"import-{uuid.uuid4().hex[:8]}"
    result = runner.invoke(app, ["import", str(dump), *_args(redis_url, target_ns)])
    assert result.exit_code == 0, result.output
    assert "Imported 8 entries" in result.stdout
    target = make_engine(embedder=hashed_embedder(), threshold=0.99, namespace=target_ns)
    for t in ("acme", "globex"):
        for i in range(4):
            a = source.lookup(source.request(f"question {i}", tenant=t))
            b = target.lookup(target.request(f"question {i}", tenant=t))
            assert a.outcome == b.outcome == Outcome.EXACT_HIT
            assert a.value == b.value == f"answer {i} for {t}".encode()
        # Semantic lookups find the imported vectors too (same embedding, other prompt).
        sem = target.lookup(target.request("another prompt", question="question 1", tenant=t))
        assert sem.outcome == Outcome.SEMANTIC_HIT
    assert target.count("acme") == 4

    # An index with other dimensions refuses the import with a fix-it message.
    other = f"import-{uuid.uuid4().hex[:8]}"
    make_engine(embedder=hashed_embedder(dims=8), namespace=other, dims=8)
    result = runner.invoke(app, ["import", str(dump), *_args(redis_url, other)])
    assert result.exit_code == 1 and "was built" in result.stderr


def test_totals_collector_parses(
    redis_url: str,
    namespace: str,
    make_engine: Callable[..., CacheEngine],
    raw_redis: redis.Redis,
) -> None:
    engine = make_engine(embedder=hashed_embedder())
    try:
        _fill(engine)
        registry = CollectorRegistry()
        registry.register(TotalsCollector(engine, tenant_label="id"))
        text = generate_latest(registry).decode()
        values = {
            (s.name, s.labels.get("tenant")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert values[("semcache_tenant_requests_total", "acme")] == 5
        assert values[("semcache_tenant_exact_hits_total", "globex")] == 1
        assert values[("semcache_tenant_entries", "acme")] == 4
        assert values[("semcache_totals_up", None)] == 1
    finally:
        delete_totals(raw_redis, "semcache", namespace)


def test_a_bad_import_file_imports_nothing_and_says_where(
    redis_url: str,
    namespace: str,
    make_engine: Callable[..., CacheEngine],
    tmp_path: Path,
) -> None:
    source = make_engine(embedder=hashed_embedder())
    _fill(source)
    dump = tmp_path / "entries.jsonl"
    assert runner.invoke(app, ["export", str(dump), *_args(redis_url, namespace)]).exit_code == 0
    good = dump.read_text().splitlines()
    target_ns = f"import-{uuid.uuid4().hex[:8]}"
    target = make_engine(namespace=target_ns, dims=16)
    cases = {
        "cut": "\n".join([*good[:5], good[5][: len(good[5]) // 2], *good[6:]]).encode(),
        "garbage first line": b"42\n" + "\n".join(good).encode(),
        "not utf-8": "\n".join(good[:3]).encode() + b"\n\xff\xfe\n",
    }
    where = {"cut": "line 6", "garbage first line": "line 1", "not utf-8": "line 4"}
    for name, content in cases.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_bytes(content)
        result = runner.invoke(app, ["import", str(bad), *_args(redis_url, target_ns)])
        assert result.exit_code == 1, (name, result.output)
        errors = [line for line in result.stderr.splitlines() if "Error" in line]
        assert len(errors) == 1 and where[name] in errors[0], (name, result.stderr)
        assert "Traceback" not in result.output
        assert target.count() == 0, f"{name}: a bad file imported entries"
