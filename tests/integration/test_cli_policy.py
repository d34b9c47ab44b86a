"""`semcache policy show|set|reset` and `semcache calibrate` against the embedded Redis."""

from __future__ import annotations

import random
from collections.abc import Callable

from typer.testing import CliRunner

from semcache_core import CacheEngine
from semcache_core.calibration import Verdict
from semcache_core.cli import app
from semcache_core.request import tenant_digest
from semcache_core.shadow import PendingCandidate

runner = CliRunner()


def _cli(redis_url: str, namespace: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--redis-url", redis_url, "--namespace", namespace])
    return result.exit_code, result.stdout, result.stderr


def test_policy_set_show_reset(
    redis_url: str, namespace: str, make_engine: Callable[..., CacheEngine]
) -> None:
    engine = make_engine(validate=False)
    code, out, _ = _cli(redis_url, namespace, "policy", "show")
    assert code == 0 and "every tenant uses the defaults" in out

    code, out, err = _cli(
        redis_url,
        namespace,
        "policy",
        "set",
        "--tenant",
        "acme",
        "--semantic",
        "shadow",
        "--promotion-threshold",
        "0.97",
        "--no-exact",
    )
    assert code == 0, err
    pol = engine.get_policy("acme")
    assert (pol.semantic, pol.promotion_threshold, pol.exact) == ("shadow", 0.97, False)
    assert pol.overrides() == {"semantic": "shadow", "promotion_threshold": 0.97, "exact": False}

    code, out, _ = _cli(redis_url, namespace, "policy", "show")
    assert code == 0 and "acme" in out and "shadow" in out
    code, out, _ = _cli(redis_url, namespace, "policy", "show", "--tenant", "globex")
    assert code == 0 and "globex" in out and "live" in out  # defaults

    code, out, err = _cli(redis_url, namespace, "policy", "set", "--tenant", "acme")
    assert code == 1 and "say what to change" in err
    code, out, err = _cli(
        redis_url, namespace, "policy", "set", "--tenant", "acme", "--threshold", "1.5"
    )
    assert code == 1 and "threshold" in err and len(err.strip().splitlines()) == 1
    code, out, err = _cli(
        redis_url, namespace, "policy", "set", "--tenant", "acme", "--semantic", "sometimes"
    )
    assert code == 1 and "semantic" in err

    code, out, _ = _cli(redis_url, namespace, "policy", "reset", "--tenant", "acme")
    assert code == 0 and engine.get_policy("acme").overrides() == {}
    assert [r["action"] for r in engine.audit_log("acme")] == ["reset", "set"]


def test_calibrate_dry_run_and_apply(
    redis_url: str, namespace: str, make_engine: Callable[..., CacheEngine]
) -> None:
    engine = make_engine(validate=False)
    engine.set_policy("acme", semantic="shadow", min_samples=100, target_error=0.05)
    code, out, _ = _cli(redis_url, namespace, "calibrate", "--tenant", "acme")
    assert code == 2 and "No threshold recommended" in out and "0 verdicts" in out

    # Verdicts as the engine writes them: agreeing above 0.9, mixed below.
    rng = random.Random(2)
    store = engine._store
    for _ in range(400):
        s = rng.uniform(0.75, 1.0)
        v = Verdict(similarity=s, agreed=s >= 0.9 or rng.random() < 0.5)
        store.add_verdict(
            tenant_digest("acme"),
            engine._state.verdict_fields(
                PendingCandidate("k", v.similarity, "", "", 0.0), v.agreed
            ),
        )
    code, out, _ = _cli(redis_url, namespace, "calibrate", "--tenant", "acme")
    assert code == 0 and "Recommended threshold" in out and "Dry run" in out
    assert engine.get_policy("acme").semantic == "shadow"

    code, out, _ = _cli(redis_url, namespace, "calibrate", "--tenant", "acme", "--apply")
    assert code == 0 and "Applied: shadow" in out
    pol = engine.get_policy("acme")
    assert pol.semantic == "live" and 0.85 < pol.threshold < 0.95
    assert engine.audit_log("acme")[0]["action"] == "promote"


def test_unreachable_redis_is_one_line() -> None:
    result = runner.invoke(
        app, ["policy", "show", "--redis-url", "redis://127.0.0.1:1/0", "--namespace", "x"]
    )
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Redis" in result.stderr
