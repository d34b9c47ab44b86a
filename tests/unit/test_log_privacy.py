"""Errors and logs never carry what a Redis command carried, nor a URL's password."""

from __future__ import annotations

import redis

from semcache_core.config import redacted_url
from semcache_core.storage.errors import translate


def test_a_pipeline_error_loses_the_command_redis_py_echoes() -> None:
    exc = redis.ResponseError("NOPERM User cache has no permissions to run the 'hsetnx' command")
    # What redis-py's pipeline does to the error of its N-th command:
    redis.client.Pipeline.annotate_exception(
        None,  # type: ignore[arg-type]
        exc,
        1,
        ("HSETNX", "semcache:__stats__:ns:ab12", "tenant_id", "customer-48151"),
    )
    assert "customer-48151" in str(exc)
    translated = str(translate(exc))
    assert "customer-48151" not in translated and "HSETNX" not in translated
    assert "NOPERM" in translated and "no permissions" in translated
    timeout = redis.TimeoutError("Timeout reading from socket")
    redis.client.Pipeline.annotate_exception(None, timeout, 2, ("HSET", "k", "payload", "secret"))  # type: ignore[arg-type]
    assert "secret" not in str(translate(timeout))


def test_a_password_in_the_query_string_is_redacted() -> None:
    url = "redis://host:6379/0?username=u&password=p4ss&socket_timeout=1"
    shown = redacted_url(url)
    assert "p4ss" not in shown and "password=***" in shown and "username=u" in shown
    assert "p4ss" not in redacted_url("redis://u:p4ss@host:6379/0?password=p4ss")
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"
