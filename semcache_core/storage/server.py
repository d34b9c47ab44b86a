"""The commands that manage an embedded Redis server: identify it, shut it down.

Used by `semcache_core.embedded`, which owns the process; the commands live here with
every other command semcache sends. Short timeouts and no retries: a probe answers in
milliseconds or means nothing usable is there (yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass(frozen=True)
class ServerIdentity:
    process_id: int
    modules: frozenset[str]


def _client(host: str, port: int, connect_timeout: float, timeout: float) -> redis.Redis:
    # redis-py retries ten times by default, which would turn each probe into seconds.
    return redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def identify(host: str, port: int, timeout: float) -> ServerIdentity | None:
    """The process id and modules of the server on ``port``; ``None`` if nothing usable
    answers (yet).

    Raises:
        redis.BusyLoadingError: a server is there but still loading its data set.
    """
    try:
        with _client(host, port, timeout, timeout) as client:
            client.ping()
            info = cast("dict[str, Any]", client.info("server"))
            raw_modules = cast("list[dict[Any, Any]]", client.module_list())
    except redis.BusyLoadingError:
        raise
    except (redis.RedisError, OSError, ValueError, KeyError):
        return None
    names = frozenset(_text(m.get(b"name", m.get("name", ""))) for m in raw_modules)
    try:
        return ServerIdentity(process_id=int(info["process_id"]), modules=names)
    except (KeyError, TypeError, ValueError):
        return None


def shutdown_if_ours(
    host: str, port: int, pid: int, connect_timeout: float, timeout: float
) -> bool:
    """SHUTDOWN the server on ``port`` if its process id is ``pid`` (never a stranger's:
    if ours died, its port may now be someone else's); ``False`` when not done."""
    try:
        with _client(host, port, connect_timeout, timeout) as client:
            info = cast("dict[str, Any]", client.info("server"))
            if int(info["process_id"]) != pid:
                return False
            client.shutdown()
            return True
    except (redis.RedisError, OSError, KeyError, TypeError, ValueError):
        return False
