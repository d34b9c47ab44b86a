"""The demo and its CLI without a Redis: bad arguments fail before connecting, an
unreachable Redis is one line, Ctrl-C exits 130, the CLI's defaults are the demo's and
it imports no LangChain. (The demo against Redis: tests/integration/test_demo.py.)"""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from semcache_core.cli import app
from semcache_demo import langchain_demo as demo_module
from semcache_demo.langchain_demo import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LATENCY,
    DEFAULT_THRESHOLD,
    DemoReport,
    run_demo,
)

runner = CliRunner()


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def test_invalid_arguments_fail_before_connecting() -> None:
    from semcache_core.errors import ConfigurationError

    cases: list[dict[str, Any]] = [
        {"threshold": 1.5},
        {"latency": -1.0},
        {"concurrency": 0},
        {"intents": 0},
        {"tenants": []},
        {"namespace": "no spaces"},
    ]
    for bad in cases:
        with pytest.raises(ConfigurationError):
            # An unroutable URL: a connection attempt would fail differently.
            run_demo("redis://127.0.0.1:1/0", console=_quiet(), **bad)


def test_cli_redis_help() -> None:
    result = runner.invoke(app, ["redis", "--help"])
    assert result.exit_code == 0, result.output
    assert "--data-dir" in result.stdout and "--port" in result.stdout


def test_cli_unreachable_redis_is_one_line() -> None:
    result = runner.invoke(app, ["demo", "--redis-url", "redis://127.0.0.1:1/0", "--latency", "0"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], result.stderr


def test_cli_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> DemoReport:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_module, "run_demo", interrupted)
    result = runner.invoke(app, ["demo", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 130


def test_cli_defaults_match_the_demo() -> None:
    from semcache_demo import cli

    params = inspect.signature(cli.demo).parameters
    assert params["threshold"].default == DEFAULT_THRESHOLD
    assert params["latency"].default == DEFAULT_LATENCY
    assert params["concurrency"].default == DEFAULT_CONCURRENCY
    assert params["namespace"].default == "demo"


def test_cli_imports_no_langchain() -> None:
    code = (
        "import sys, semcache_core.cli\n"
        "assert 'semcache_demo.cli' in sys.modules  # the demo command is loaded\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('langchain', 'torch')))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
