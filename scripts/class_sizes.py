#!/usr/bin/env python
"""Print the largest classes of the three packages (lines from `class` to its end)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("semcache_core", "langchain_semcache", "llamaindex_semcache")


def sizes() -> list[tuple[int, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    rel = path.relative_to(ROOT)
                    out.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    return sorted(out, reverse=True)


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for n, name in sizes()[:limit]:
        print(f"{n:5d}  {name}")
