"""The README's settings table documents every `CacheConfig` field."""

from __future__ import annotations

import re
from pathlib import Path

from semcache_core.config import CacheConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    missing = set(CacheConfig.model_fields) - documented
    assert not missing, f"settings missing from the README's table: {sorted(missing)}"
    assert "question_vars" in section


def test_readme_has_no_hard_coded_local_redis_in_cli_snippets() -> None:
    text = README.read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        assert "localhost:6379" not in block, block
