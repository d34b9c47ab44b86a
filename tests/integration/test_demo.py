"""The demo and the CLI, against the session's embedded Redis and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from rich.console import Console
from typer.testing import CliRunner

from semcache_core import CacheEngine
from semcache_core.cli import app
from semcache_demo.langchain_demo import (
    DEFAULT_THRESHOLD,
    MODELS,
    PRICES,
    TENANTS,
    DemoReport,
    run_demo,
)
from semcache_demo.workload import INTENTS

runner = CliRunner()


def _namespace() -> str:
    return f"demo-{uuid.uuid4().hex[:10]}"


def _drop(redis_url: str, namespace: str) -> None:
    engine = CacheEngine(redis_url, namespace=namespace, validate=False)
    engine.drop_index()
    engine.close()


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


@pytest.fixture(scope="module")
def full_run(redis_url: str) -> Iterator[tuple[DemoReport, str, Any]]:
    """The whole workload at the default threshold and concurrency, with a console to read."""
    namespace = _namespace()
    console = _quiet()
    sentinel = InMemoryCache()
    before = get_llm_cache()
    set_llm_cache(sentinel)
    try:
        report = run_demo(redis_url, latency=0.0, console=console, namespace=namespace)
        after = get_llm_cache()
    finally:
        set_llm_cache(before)
        _drop(redis_url, namespace)
    assert isinstance(console.file, io.StringIO)
    yield report, console.file.getvalue(), after


def test_every_stream_has_exact_and_semantic_hits(full_run: tuple[DemoReport, str, Any]) -> None:
    report, _, _ = full_run
    questions = sum(len(i.questions) for i in INTENTS)
    assert set(report.tallies) == {(t, m) for t in TENANTS for m in MODELS}
    for key, tally in report.tallies.items():
        assert tally.requests == 2 * questions, key
        assert tally.exact_hits > 0, key  # the second pass repeats every question
        assert tally.semantic_hits > 0, key
        assert tally.exact_hits + tally.semantic_hits + tally.misses == tally.requests
        assert tally.hit_rate == pytest.approx(tally.hits / tally.requests)
    # Each stream asked each of its questions exactly once per pass.
    per_stream = Counter((r.tenant, r.model, r.index) for r in report.records)
    assert len(per_stream) == 4 * 2 * questions and set(per_stream.values()) == {1}


def test_no_wrong_serves_at_the_default_threshold(full_run: tuple[DemoReport, str, Any]) -> None:
    report, _, _ = full_run
    assert report.threshold == DEFAULT_THRESHOLD
    assert report.tally().wrong_serves == 0
    assert not [r for r in report.records if r.wrong]


def test_engine_stats_agree_with_the_report(full_run: tuple[DemoReport, str, Any]) -> None:
    report, _, _ = full_run
    stats = report.engine_stats["tenants"]
    assert set(stats) == set(TENANTS)
    for t in TENANTS:
        mine = report.tally(tenant=t)
        theirs = stats[t]
        assert theirs["errors"] == 0 and theirs["bypassed"] == 0
        assert theirs["requests"] == mine.requests
        assert theirs["exact_hits"] == mine.exact_hits
        assert theirs["semantic_hits"] == mine.semantic_hits
        # What the models answered: plain misses and candidates the verifier refused.
        assert theirs["misses"] + theirs["guarded"] == mine.misses
        assert theirs["stores"] == mine.misses  # every answer the models gave was cached
        assert theirs["tokens_saved"] == mine.tokens_saved
        assert theirs["cost_saved_usd"] == pytest.approx(mine.cost_saved_usd)
        assert mine.cost_saved_usd > 0


def test_cli_stats_after_the_demo_count_the_money_saved(
    full_run: tuple[DemoReport, str, Any], redis_url: str
) -> None:
    report, _, _ = full_run
    args = ["stats", "--redis-url", redis_url, "--namespace", report.namespace]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for t in TENANTS:
        assert f"${report.tally(tenant=t).cost_saved_usd:,.4f}" in result.stdout, result.stdout


def test_every_intent_reached_a_model_and_hits_save_tokens(
    full_run: tuple[DemoReport, str, Any],
) -> None:
    report, _, _ = full_run
    assert sum(r.first_ask for r in report.records) == 4 * len(INTENTS)
    # Several requests are in flight per stream, so a paraphrase can overtake its intent's
    # first ask; still, someone in each stream had to ask the model about each intent.
    missed = {(r.tenant, r.model, r.intent_id) for r in report.records if r.outcome == "miss"}
    assert len(missed) == 4 * len(INTENTS)
    for (t, m), tally in report.tallies.items():
        hits = [r for r in report.records if r.tenant == t and r.model == m and r.hit]
        assert tally.tokens_saved == sum(r.total_tokens for r in hits) > 0
        expected = sum(PRICES[m].cost(r.input_tokens, r.output_tokens) for r in hits)
        assert tally.cost_saved_usd == pytest.approx(expected)
        assert all(r.similarity is not None for r in hits)
    total = report.tally()
    assert total.requests == sum(t.requests for t in report.tallies.values())
    assert total.cost_saved_usd == pytest.approx(
        sum(t.cost_saved_usd for t in report.tallies.values())
    )


def test_output_and_global_cache(full_run: tuple[DemoReport, str, Any]) -> None:
    _, output, after = full_run
    for text in ("Tenant acme", "Tenant globex", "support-small", "support-large", "total"):
        assert text in output
    assert "illustrative prices" in output
    assert "Overall: hit rate" in output and "0 wrong serves" in output
    # LangChain's previous global cache is back.
    assert isinstance(after, InMemoryCache)


def test_tenants_do_not_share(redis_url: str) -> None:
    """acme asks after globex asked everything: acme still misses every first ask."""
    namespace = _namespace()
    try:
        kwargs: dict[str, Any] = dict(
            latency=0.0, intents=8, concurrency=1, namespace=namespace, console=_quiet()
        )
        globex = run_demo(redis_url, tenants=["globex"], **kwargs)
        acme = run_demo(redis_url, tenants=["acme"], clear=False, **kwargs)
        warm = run_demo(redis_url, tenants=["globex"], clear=False, **kwargs)
    finally:
        _drop(redis_url, namespace)

    firsts = [r for r in acme.records if r.first_ask]
    assert len(firsts) == 2 * 8
    assert all(r.outcome == "miss" for r in firsts)
    # Isolated, acme's streams play out exactly as globex's did on the empty cache.
    for model in MODELS:
        a, g = acme.tallies[("acme", model)], globex.tallies[("globex", model)]
        assert (a.exact_hits, a.semantic_hits, a.misses) == (
            g.exact_hits,
            g.semantic_hits,
            g.misses,
        )
    # The control: globex's own entries were there all along.
    assert warm.tally().misses == 0
    assert warm.engine_stats["tenants"]["globex"]["stores"] == 0


async def test_runs_inside_an_event_loop(redis_url: str) -> None:
    """In a notebook a loop is already running; the replay then runs in a worker thread."""
    namespace = _namespace()
    try:
        report = run_demo(redis_url, latency=0.0, intents=3, namespace=namespace, console=_quiet())
    finally:
        _drop(redis_url, namespace)
    assert report.tally().requests == len(report.records) > 0
    assert report.tally().exact_hits > 0


# -- the CLI -------------------------------------------------------------------------------


def test_cli_demo(redis_url: str) -> None:
    namespace = _namespace()
    try:
        result = runner.invoke(
            app,
            [
                "demo",
                "--redis-url",
                redis_url,
                "--latency",
                "0",
                "--intents",
                "4",
                "--concurrency",
                "2",
                "--namespace",
                namespace,
            ],
        )
    finally:
        _drop(redis_url, namespace)
    assert result.exit_code == 0, result.output
    for text in ("Tenant acme", "Tenant globex", "support-small", "support-large", "Overall"):
        assert text in result.stdout
    assert "Started the embedded Redis" not in result.stdout


def test_cli_bad_threshold_is_one_line(redis_url: str) -> None:
    result = runner.invoke(app, ["demo", "--redis-url", redis_url, "--threshold", "1.5"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:") and "threshold" in lines[0]
    assert "Traceback" not in result.output
