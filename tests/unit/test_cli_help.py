"""The CLI's help: flags show no value type, and docstring paragraphs are reflowed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from semcache_core.cli import app

runner = CliRunner()

COMMANDS = [
    [],
    ["redis"],
    ["demo"],
    ["stats"],
    ["invalidate"],
    ["export"],
    ["import"],
    ["metrics"],
    ["calibrate"],
    ["policy"],
    ["policy", "show"],
    ["policy", "set"],
    ["policy", "reset"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "semcache")
def test_help_shows_no_type_on_flags(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def test_demo_help_paragraph_is_one_flowing_text() -> None:
    result = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "250"})
    assert "the tables show exact and semantic hits, wrong answers served" in result.output


def test_calibrate_help_documents_exit_code_2() -> None:
    result = runner.invoke(app, ["calibrate", "--help"], env={"COLUMNS": "250"})
    assert "Exits with 2" in result.output
