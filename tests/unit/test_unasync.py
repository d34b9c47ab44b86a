"""The sync drivers and store are generated from the async ones: they must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_sync_code_is_current() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/unasync.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_async_method_has_a_sync_twin() -> None:
    import inspect

    from semcache_core import CacheEngine

    public = {n for n in dir(CacheEngine) if not n.startswith("_")}
    coroutines = {n for n in public if inspect.iscoroutinefunction(getattr(CacheEngine, n))}
    missing = sorted(n for n in coroutines if n != "acreate" and n[1:] not in public)
    assert missing == [], f"async methods without a sync form: {missing}"
    io_methods = {
        "lookup", "store", "setup", "invalidate", "get_policy", "set_policy", "reset_policy",
        "policies", "audit_log", "verdicts", "clear_verdicts", "calibrate", "stats", "count",
        "drop_index", "drop_namespace", "close",
    }  # fmt: skip
    assert sorted(n for n in io_methods if f"a{n}" not in public) == []
