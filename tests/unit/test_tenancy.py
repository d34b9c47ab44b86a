"""The tenant context is per thread and per asyncio task."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest

from semcache_core import cache_context, current_tenant, tenant
from semcache_core.errors import ConfigurationError
from semcache_core.tenancy import current_context


def test_nesting_and_restore() -> None:
    assert current_tenant() is None
    with tenant("a"), cache_context(tags=["x"], scope={"k": 1}):
        with tenant("b"):
            assert current_tenant() == "b"
            assert current_context().tags == ("x",)
            assert dict(current_context().scope) == {"k": 1}
        assert current_tenant() == "a"
    assert current_tenant() is None


def test_threads_do_not_share() -> None:
    seen: dict[str, str | None] = {}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        with tenant(name):
            barrier.wait()
            seen[name] = current_tenant()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"t1": "t1", "t2": "t2"}


async def test_tasks_do_not_share() -> None:
    async def work(name: str) -> str | None:
        with tenant(name):
            await asyncio.sleep(0.01)
            return current_tenant()

    names = [f"t{i}" for i in range(50)]
    assert await asyncio.gather(*(work(n) for n in names)) == names


def test_bad_values() -> None:
    with pytest.raises(ConfigurationError), tenant(""):
        pass
    with pytest.raises(ConfigurationError), cache_context(ttl=-1):
        pass


@pytest.mark.parametrize(
    "scope",
    [{"x": math.nan}, {"x": object()}, {1: "a", "b": 2}, ["not", "a", "mapping"]],
    ids=["nan", "object", "mixed-keys", "list"],
)
def test_a_bad_scope_fails_at_with_time(scope: Any) -> None:
    entered = False
    with pytest.raises(ConfigurationError, match="scope"), cache_context(scope=scope):
        entered = True
    assert not entered  # never reaches model.invoke
