"""Only `semcache_core/storage/` sends Redis commands.

Outside it, a module may name redis-py's exception classes (to catch them) and its client
types (to accept a user's client), and nothing else: no client construction, no command,
no pipeline, no pub/sub. The check reads every module's syntax tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "semcache_core"
REDIS_ALIASES = {"redis", "aredis", "redis_py"}
ALLOWED_TYPES = {"Redis", "asyncio"}  # annotations of a caller's client
# (`publish` is also the store's own method, which the drivers call.)
COMMAND_METHODS = {
    "execute_command",
    "pipeline",
    "pubsub",
    "scan_iter",
    "hmget",
    "hset",
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("redis"):
            for alias in node.names:
                if not alias.name.endswith("Error"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name} from redis")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in REDIS_ALIASES
            and not (node.attr.endswith("Error") or node.attr in ALLOWED_TYPES)
        ):
            found.append(f"{path.name}:{node.lineno} uses redis.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in COMMAND_METHODS
        ):
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
    return found


# Modules outside storage/ allowed to send commands, each with why.
EXEMPT = {
    # Test and benchmark infrastructure, not the cache's data path: it forms a loopback
    # cluster (CLUSTER ADDSLOTSRANGE / MEET / REPLICATE) and watches failovers. Written
    # while storage/ was being changed for Redis Cluster; may move to storage/ later.
    CORE / "embedded_cluster.py",
}


def _outside_storage() -> list[Path]:
    return [
        p
        for p in CORE.rglob("*.py")
        if "storage" not in p.relative_to(CORE).parts and p not in EXEMPT
    ]


def test_each_exemption_names_a_module_that_needs_it() -> None:
    assert all(path.is_file() and _violations(path) for path in EXEMPT)


def test_no_redis_command_outside_storage() -> None:
    found = [v for path in _outside_storage() for v in _violations(path)]
    assert found == []


def test_the_check_catches_a_command(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import redis\nclient = redis.Redis.from_url('redis://x')\nclient.pipeline()\n"
        "from redis.retry import Retry\n"
    )
    found = _violations(planted)
    assert any("from_url" in v or "calls .pipeline" in v for v in found)
    assert any("imports Retry" in v for v in found)
    assert len(_outside_storage()) > 20  # the walk sees the package
