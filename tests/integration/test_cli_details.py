"""Small CLI and stats details: bad policy input, shadow hits apart from misses, the
policy table at 80 columns."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from typer.testing import CliRunner

from semcache_core import CacheConfig, CacheEngine, Outcome
from semcache_core.cli import app
from semcache_core.config import build_config
from semcache_core.errors import ConfigurationError
from tests.conftest import constant_embedder, delete_totals

runner = CliRunner()


def test_bad_policy_input_says_what_is_wrong_with_the_input(
    make_engine: Callable[..., CacheEngine],
) -> None:
    engine = make_engine(embedder=constant_embedder(), validate=False)
    with pytest.raises(ConfigurationError) as info:
        engine.set_policy("fresh-tenant", semantic="bogus")
    message = str(info.value)
    assert "stored policy" not in message
    assert "semantic" in message and "bogus" in message and "'shadow'" in message
    with pytest.raises(ConfigurationError, match="threshold"):
        engine.set_policy("fresh-tenant", threshold=1.5)
    assert engine.policies() == {}  # nothing was stored


def test_a_corrupt_stored_policy_is_still_called_corrupt(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis
) -> None:
    engine = make_engine(embedder=constant_embedder(), validate=False)
    engine.set_policy("acme", semantic="shadow")
    keys = [k for k in raw_redis.scan_iter(match=f"*{engine.config.namespace}*") if b"pol" in k]
    assert keys, "no policy key found"
    for key in keys:
        if raw_redis.type(key) == b"string":
            raw_redis.set(key, b'{"semantic": "bogus"}')
        elif raw_redis.type(key) == b"hash":
            for field in raw_redis.hkeys(key):
                raw_redis.hset(key, field, b'{"semantic": "bogus"}')
    with pytest.raises(ConfigurationError, match="stored policy of 'acme' is invalid"):
        engine.set_policy("acme", threshold=0.9)


def test_cli_policy_set_bogus_is_one_line_about_the_input(redis_url: str, namespace: str) -> None:
    args = ["--redis-url", redis_url, "--namespace", namespace]
    result = runner.invoke(app, ["policy", "set", "--tenant", "new", "--semantic", "bogus", *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stored policy" not in lines[0], lines
    assert "semantic" in lines[0] and "bogus" in lines[0]


def test_shadow_hits_are_not_counted_as_misses(
    make_engine: Callable[..., CacheEngine], raw_redis: redis.Redis, namespace: str
) -> None:
    config = build_config(semantic="shadow", promotion_threshold=None)  # nothing promoted
    engine = make_engine(embedder=constant_embedder(), config=config)
    try:
        first = engine.request("what is the refund window?", tenant="acme")
        assert engine.lookup(first).outcome == Outcome.MISS
        engine.store(first, b"30 days")
        other = engine.request("how long do refunds take?", tenant="acme")
        assert engine.lookup(other).outcome == Outcome.SHADOW_HIT
        local = engine.stats()["tenants"]["acme"]
        assert (local["requests"], local["misses"], local["shadow_hits"]) == (2, 1, 1)
        totals = engine.stats()["totals"]["acme"]
        assert (totals["misses"], totals["shadow_hits"]) == (1, 1)

        args = ["--redis-url", engine.config.redis_url, "--namespace", namespace]
        result = runner.invoke(app, ["stats", *args], env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        header = next(line for line in result.stdout.splitlines() if "miss" in line)
        row = next(line for line in result.stdout.splitlines() if line.strip().startswith("acme"))
        cells = dict(zip(header.split(), row.split(), strict=False))
        assert (cells["reqs"], cells["shadow"], cells["miss"]) == ("2", "1", "1"), result.stdout
    finally:
        delete_totals(raw_redis, "semcache", namespace)


def test_policy_table_fits_80_columns_and_marks_overrides(redis_url: str, namespace: str) -> None:
    args = ["--redis-url", redis_url, "--namespace", namespace]
    env = {"COLUMNS": "80", "NO_COLOR": "1"}
    set_ = ["policy", "set", "--tenant", "acme", "--semantic", "shadow", "--ttl", "3600", *args]
    assert runner.invoke(app, set_, env=env).exit_code == 0
    result = runner.invoke(app, ["policy", "show", *args], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert "…" not in result.stdout  # no header or value cut
    for word in ("tenant", "exact", "semantic", "threshold", "promote", "ttl", "target"):
        assert word in result.stdout
    for word in ("error", "samples"):
        assert word in result.stdout
    row = next(line for line in lines if line.strip().startswith("acme")).split()
    assert row[1:4] == [
        "on",
        "shadow*",
        f"{CacheConfig().threshold:g}",
    ]  # overrides marked, defaults plain
    assert "3600*" in row
    assert "* the tenant's override" in result.stdout
    runner.invoke(app, ["policy", "reset", "--tenant", "acme", *args])
