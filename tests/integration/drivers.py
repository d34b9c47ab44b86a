"""One test, both drivers: the `driver` fixture (tests/integration/conftest.py) runs a
test once on the sync driver and once on the async one.

A test makes its engines through the driver, ``engine = driver.make(make_engine, ...)``
(validated on that driver), or wraps one, ``driver(engine)``, and calls the engine's I/O
methods by their sync names (``engine.lookup``, ``engine.set_policy``...).
On ``sync`` that is the engine's sync method; on ``async`` it is the ``a``-method
(``alookup``...), run to completion on an event loop the fixture owns for the whole test
(one `asyncio.Runner`), so the engine's per-loop async client is made once, reused by
every call, and closed (``aclose``) at teardown. A method with no async form raises
instead of quietly running the sync driver under the ``async`` id.

Context variables behave as when an app awaits the call in its own task: the call sees
the caller's ``cache_context``/``tenant``, and what it sets (``last_lookup``) is seen by
the caller afterwards.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from semcache_core import CacheEngine

T = TypeVar("T")

DRIVERS = ("sync", "async")

# CacheEngine's public methods that go through no driver: the same code on both.
NO_DRIVER = frozenset({"request", "key", "report_error", "drain_calibration"})

_UNSET = object()


class Driver:
    """Runs calls on one driver: ``"sync"`` or ``"async"`` (on ``runner``'s loop)."""

    def __init__(self, name: str, runner: asyncio.Runner | None = None) -> None:
        assert name in DRIVERS and (runner is not None) == (name == "async")
        self.name = name
        self._runner = runner
        self._engines: list[CacheEngine] = []

    def __repr__(self) -> str:
        return f"Driver({self.name})"

    @property
    def is_async(self) -> bool:
        return self._runner is not None

    def __call__(self, engine: CacheEngine) -> DrivenEngine:
        """``engine`` seen through this driver."""
        if engine not in self._engines:
            self._engines.append(engine)
        return DrivenEngine(self, engine)

    def make(self, factory: Callable[..., CacheEngine], *args: Any, **kwargs: Any) -> DrivenEngine:
        """An engine made by ``factory`` (`CacheEngine`, or the ``make_engine`` fixture)
        and validated on this driver: on sync as ``CacheEngine(...)`` does (`setup`), on
        async as ``await CacheEngine.acreate(...)`` does (`asetup`, same errors)."""
        if self._runner is None or kwargs.get("validate") is False:
            return self(factory(*args, **kwargs))
        engine = factory(*args, validate=False, **kwargs)
        driven = self(engine)  # closed at teardown, even when validating raises
        self._await(engine._avalidate_now())  # acreate's own step
        return driven

    def run(
        self,
        sync: Callable[..., T],
        async_: Callable[..., Awaitable[T]],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """``sync(*args, **kwargs)`` on the sync driver; ``await async_(*args, **kwargs)``
        on this test's event loop on the async one."""
        if self._runner is None:
            return sync(*args, **kwargs)
        return self._await(async_(*args, **kwargs))

    def concurrently(
        self, n: int, sync: Callable[[int], T], async_: Callable[[int], Awaitable[T]]
    ) -> list[T]:
        """``n`` callers at once, results in order: ``n`` threads released together, each
        calling ``sync(i)``, on the sync driver; ``n`` tasks ``async_(i)`` gathered on this
        test's loop on the async one. (Inside them, call the engine's own ``x``/``ax``
        methods: a driven engine's methods run a call to completion.)"""
        if self._runner is None:
            barrier = threading.Barrier(n)

            def one(i: int) -> T:
                barrier.wait()
                return sync(i)

            with ThreadPoolExecutor(n) as pool:
                return list(pool.map(one, range(n)))

        async def gathered() -> list[T]:
            return list(await asyncio.gather(*(async_(i) for i in range(n))))

        return self._await(gathered())

    def _await(self, awaitable: Awaitable[T]) -> T:
        assert self._runner is not None
        context = contextvars.copy_context()
        result = self._runner.run(_awaited(awaitable), context=context)
        _adopt(context)
        return result

    def close(self) -> None:
        """The async driver's teardown: ``aclose`` every engine on the loop that used it
        (its counters written, its client for this loop closed)."""
        if self._runner is not None:
            for engine in self._engines:
                self._runner.run(engine.aclose())


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _adopt(context: contextvars.Context) -> None:
    """Set in the caller's context what the call set in its copy of it."""
    for var, value in context.items():
        if var.get(_UNSET) is not value:
            var.set(value)


class DrivenEngine:
    """A `CacheEngine` whose I/O methods run on one driver; everything else (``request``,
    ``config``, ``layout``...) is the engine's own. ``.engine`` is the engine itself, for
    a test that reaches into its internals."""

    def __init__(self, driver: Driver, engine: CacheEngine) -> None:
        self.driver = driver
        self.engine = engine

    def __repr__(self) -> str:
        return f"DrivenEngine({self.driver.name}, {self.engine.config.namespace})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{name}: private; use .engine.{name} (no driver applies)")
        value = getattr(self.engine, name)
        if not callable(value) or name in NO_DRIVER:
            return value
        twin = getattr(type(self.engine), f"a{name}", None)
        if twin is not None and inspect.iscoroutinefunction(twin):
            return _Dispatch(self.driver, value, getattr(self.engine, f"a{name}"))
        if name.startswith("a") and hasattr(self.engine, name[1:]):
            raise AttributeError(
                f"{name}: call {name[1:]} on a driven engine; the driver picks the form"
            )
        raise AttributeError(
            f"CacheEngine.{name} has no async form (a{name}), so it cannot run on both "
            "drivers: add the async twin, or list it in NO_DRIVER if it does no I/O"
        )


class _Dispatch:
    def __init__(
        self, driver: Driver, sync: Callable[..., Any], async_: Callable[..., Awaitable[Any]]
    ) -> None:
        self.driver, self.sync, self.async_ = driver, sync, async_

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.driver.run(self.sync, self.async_, *args, **kwargs)
