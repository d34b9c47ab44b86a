"""The engine imports no framework, no adapter and no demo: every module of semcache_core,
read with `ast` (static, lazy and ``TYPE_CHECKING`` imports alike, and
``importlib.import_module`` / ``__import__`` of a literal name)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parents[2] / "semcache_core"
FORBIDDEN = ("langchain", "llama_index", "llamaindex", "semcache_demo")
"""Top-level module prefixes: LangChain and its packages (``langchain_core``, the adapter
``langchain_semcache``), LlamaIndex (``llama_index.*``, the adapter ``llamaindex_semcache``)
and the demo package."""


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``; relative imports stay
    inside the package and are left out."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.append((node.lineno, first.value))
    return sorted(found)


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    return [
        (line, name)
        for line, name in imported_modules(source)
        if name.split(".")[0].startswith(FORBIDDEN)
    ]


def test_semcache_core_imports_no_framework_and_no_demo() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert CORE / "__init__.py" in modules and CORE / "cli.py" in modules
    offenders = [
        f"{path.relative_to(CORE.parent)}:{line}: {name}"
        for path in modules
        for line, name in forbidden_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_check_sees_every_kind_of_import() -> None:
    source = """
import langchain_core.messages
from llama_index.core import Settings
import semcache_demo.workload as workload
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from langchain_semcache import SemanticCache
def lazy():
    from llamaindex_semcache.llm import wrap
    import importlib
    importlib.import_module("langchain.globals")
    __import__("semcache_demo")
from . import engine
from .engine import CacheEngine
import redis, numpy
"""
    assert [name for _, name in forbidden_imports(source)] == [
        "langchain_core.messages",
        "llama_index.core",
        "semcache_demo.workload",
        "langchain_semcache",
        "llamaindex_semcache.llm",
        "langchain.globals",
        "semcache_demo",
    ]
