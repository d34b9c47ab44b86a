"""Redis errors become semcache's at the storage boundary (httpcore's ``map_exceptions``).

Every public store method runs inside `map_exceptions`, so code above ``storage/`` sees
only the `semcache_core.errors` family: `BackendTimeoutError`, `BackendRefusedError`
(Redis answered with an error: OOM, READONLY, a wrong type), `IndexMissingError` (the
index is gone: a restart without persistence, FLUSHALL, failover), `PoolExhaustedError`
(no pooled connection came free in time: this process is busy, not Redis),
`DeadlineSpentError` (the call's Redis budget was spent before this trip), and
`BackendUnavailableError` for the rest. A Redis without the search module gets the
fix-it `ConfigurationError`, not the echoed command.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

from ..errors import (
    BackendRefusedError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    DeadlineSpentError,
    IndexMissingError,
    PoolExhaustedError,
    SemcacheError,
)
from .deadline import BudgetSpent
from .schema import NO_SEARCH_MODULE

#: What a Redis fault looks like above the boundary (and, from raw clients, below it).
REDIS_FAULTS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    OSError,
    BackendUnavailableError,
)


def is_missing_index(exc: BaseException) -> bool:
    """Redis came back empty (restart without persistence, FLUSHALL, failover)."""
    if isinstance(exc, IndexMissingError):
        return True
    text = str(exc).lower()
    return isinstance(exc, redis.ResponseError) and (
        "no such index" in text or "unknown index" in text
    )


# redis-py prefixes a pipeline's error with the command that failed, arguments and all:
# a key, a tenant id, a prompt. Messages and logs keep only Redis's own words.
_PIPELINE_ANNOTATION = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.S)


def describe(exc: BaseException) -> str:
    """``Type: message`` of a Redis error without the command redis-py echoes in it."""
    text = _PIPELINE_ANNOTATION.sub("", str(exc))
    return f"{type(exc).__name__}: {text}"


def is_pool_exhausted(exc: BaseException) -> bool:
    """redis-py's blocking pool gave up waiting for a free connection (or a plain pool
    is at ``max_connections``)."""
    if isinstance(exc, PoolExhaustedError | redis.exceptions.MaxConnectionsError):
        return True
    return isinstance(exc, redis.ConnectionError) and str(exc).startswith(
        "No connection available"
    )


def translate(exc: BaseException, url: str = "this address") -> BaseException:
    """The semcache error for a Redis (or socket) error; other exceptions unchanged."""
    if isinstance(exc, SemcacheError):
        return exc
    err: SemcacheError
    if isinstance(exc, redis.ResponseError):
        text = str(exc).lower()
        if "unknown command 'ft." in text:
            err = ConfigurationError(NO_SEARCH_MODULE.format(url=url))
        elif is_missing_index(exc):
            err = IndexMissingError(f"Redis lost the index: {describe(exc)}")
        else:
            err = BackendRefusedError(f"Redis refused: {describe(exc)}")
    elif isinstance(exc, BudgetSpent):
        err = DeadlineSpentError("the call's Redis deadline is spent; the trip was not made")
    elif is_pool_exhausted(exc):
        err = PoolExhaustedError(
            f"no free Redis connection in time: {describe(exc)} (this process has more "
            "calls in flight than max_connections; raise it, or pool_timeout)"
        )
    elif isinstance(exc, redis.TimeoutError):
        err = BackendTimeoutError(f"Redis timed out: {describe(exc)}")
    elif isinstance(exc, (redis.RedisError, OSError)):
        err = BackendUnavailableError(f"Redis failed: {describe(exc)}")
    else:
        return exc
    err.__cause__ = exc
    return err


@contextlib.contextmanager
def map_exceptions(url: str = "this address") -> Iterator[None]:
    """Re-raise Redis and socket errors as semcache errors (``raise ... from exc``)."""
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise translate(exc, url) from exc


T = TypeVar("T")


def boundary(cls: type[T]) -> type[T]:
    """Class decorator: every public method (sync or ``async``) of a store translates
    Redis errors with `map_exceptions`, using the instance's ``url`` for the fix-it text."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(fn):
            continue
        setattr(cls, name, _translated(fn))
    return cls


def _translated(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            with map_exceptions(self.url):
                return await fn(self, *args, **kwargs)

        return run_async

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with map_exceptions(self.url):
            return fn(self, *args, **kwargs)

    return run
