"""Commands from other packages: the ``semcache.commands`` entry points the CLI loads."""

from __future__ import annotations

from importlib import metadata

import pytest
import typer

from semcache_core import cli
from semcache_core.cli_base import COMMANDS_GROUP


def test_demo_comes_from_its_entry_point_listed_after_redis() -> None:
    entries = {e.name: e.value for e in metadata.entry_points(group=COMMANDS_GROUP)}
    assert entries.get("demo") == "semcache_demo.cli:register", (
        "no semcache.commands entry point for the demo: reinstall (pip install -e .)"
    )
    group = typer.main.get_command(cli.app)
    assert isinstance(group, typer.core.TyperGroup)
    assert group.list_commands(typer.Context(group)) == [
        "redis",
        "demo",
        "calibrate",
        "stats",
        "invalidate",
        "reindex",
        "export",
        "import",
        "metrics",
        "policy",
    ]


def test_a_broken_plugin_is_one_line_and_the_others_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = [
        metadata.EntryPoint("gone", "no_such_package.cli:register", COMMANDS_GROUP),
        metadata.EntryPoint("demo", "semcache_demo.cli:register", COMMANDS_GROUP),
        metadata.EntryPoint("bad", "semcache_core.cli_base:COMMANDS_GROUP", COMMANDS_GROUP),
    ]
    monkeypatch.setattr(
        metadata, "entry_points", lambda group: installed if group == COMMANDS_GROUP else []
    )
    target = typer.Typer()
    cli._add_installed_commands(target)
    assert [c.name for c in target.registered_commands] == ["demo"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert "skipped" in lines[0] and "no_such_package.cli:register" in lines[0]
    assert "skipped" in lines[1] and "semcache_core.cli_base:COMMANDS_GROUP" in lines[1]
