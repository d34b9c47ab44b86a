"""No class over about 400 lines in the three packages (scripts/class_sizes.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 400


def _sizes() -> list[tuple[int, str]]:
    spec = importlib.util.spec_from_file_location("class_sizes", ROOT / "scripts/class_sizes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sizes()  # type: ignore[no-any-return]


def test_no_class_is_over_the_limit() -> None:
    sizes = _sizes()
    assert len(sizes) > 50  # it reads the packages
    assert [s for s in sizes if s[0] > LIMIT] == []
