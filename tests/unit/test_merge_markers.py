"""No committed text file carries an unresolved merge conflict."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.toml", "*.ipynb", "*.jsonl", "*.yml", "*.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ROOT / line for line in out.splitlines() if line]


def test_no_conflict_markers() -> None:
    files = tracked_text_files()
    assert len(files) > 50, "git ls-files found too few files: is this a git checkout?"
    bad = [
        str(path.relative_to(ROOT))
        for path in files
        if path.exists() and MARKER.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert bad == [], f"unresolved merge conflict markers in {bad}"
