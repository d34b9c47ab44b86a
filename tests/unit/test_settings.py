"""Construction without a Redis: invalid settings raise naming the field before any
I/O, an unreachable Redis raises with a fix (``require_redis=True``) or is tolerated,
``SemanticCache`` takes ``engine=`` or settings, and the environment fills settings.
(Construction against Redis: tests/integration/test_construction.py.)
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from langchain_semcache import SemanticCache
from semcache_core import BackendUnavailableError, CacheEngine, ConfigurationError, Outcome
from semcache_core.config import build_config
from tests.conftest import hashed_embedder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _closed_url() -> str:
    return f"redis://127.0.0.1:{_free_port()}/0"


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A listening port that never accepts: connections complete in the kernel's backlog
    and are never answered, and `connections` counts them afterwards."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield sock


def _url(sock: socket.socket) -> str:
    return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def connections(sock: socket.socket) -> int:
    """How many connections were made to ``sock`` (accepting and closing them)."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


# -- 1. invalid settings -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 1.5),
        ("threshold", -0.1),
        ("ttl", -1),
        ("namespace", "a b"),
        ("namespace", "__x"),
        ("namespace", "a*"),
        ("socket_timeout", 0),
        ("breaker_failures", 0),
    ],
)
def test_invalid_setting_raises_naming_the_field(
    silent_port: socket.socket, field: str, value: Any
) -> None:
    # The settings are checked before any I/O: nothing ever connected to the port.
    with pytest.raises(ConfigurationError) as info:
        settings: dict[str, Any] = {field: value}
        CacheEngine(_url(silent_port), require_redis=True, **settings)
    assert connections(silent_port) == 0
    message = str(info.value)
    assert message.startswith("invalid semcache configuration")
    assert f"{field}:" in message
    assert repr(value) in message
    assert not isinstance(info.value, BackendUnavailableError)


@pytest.mark.parametrize("value", ["a b", "__x", "a*"])
def test_bad_namespace_message_says_what_is_allowed(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheEngine(_closed_url(), namespace=value, validate=False)
    assert "letters, digits" in str(info.value)


def test_invalid_setting_through_semantic_cache() -> None:
    with pytest.raises(ConfigurationError, match="threshold"):
        SemanticCache(redis_url=_closed_url(), threshold=1.5)


def test_unknown_setting_raises() -> None:
    with pytest.raises(ConfigurationError, match="threshhold"):
        CacheEngine(_closed_url(), validate=False, threshhold=0.9)


def test_malformed_redis_url_raises_with_examples() -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheEngine("http://localhost:6379")
    assert "redis://localhost:6379/0" in str(info.value)


# -- 2. an unreachable Redis -------------------------------------------------------------------
def test_unreachable_redis_with_require_redis_raises_with_a_fix() -> None:
    url = _closed_url()
    with pytest.raises(BackendUnavailableError) as info:
        CacheEngine(url, embedder=hashed_embedder(), require_redis=True)
    message = str(info.value)
    assert url in message
    assert "semcache redis" in message  # start one
    assert "redis_url" in message  # or point at the right one
    assert "require_redis=False" in message  # or start anyway


def test_a_silent_redis_costs_one_connection_attempt(silent_port: socket.socket) -> None:
    """A port that accepts and never answers (a paused server): one attempt, bounded by
    ``socket_timeout``, no retries."""
    with pytest.raises(BackendUnavailableError, match="cannot reach Redis"):
        CacheEngine(_url(silent_port), require_redis=True)
    assert connections(silent_port) == 1


async def test_unreachable_redis_without_require_redis_constructs_and_misses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = _closed_url()
    with caplog.at_level(logging.WARNING, logger="semcache"):
        engine = CacheEngine(url, embedder=hashed_embedder())
    try:
        assert any(
            "unreachable" in r.getMessage() and url in r.getMessage() for r in caplog.records
        )
        request = engine.request("asked while Redis is down")
        for _ in range(engine.config.breaker_failures + 1):
            result = engine.lookup(request)
            assert result.outcome in (Outcome.ERROR, Outcome.BYPASS)
            assert not result.hit and result.value is None
            aresult = await engine.alookup(request)
            assert aresult.outcome in (Outcome.ERROR, Outcome.BYPASS)
            assert engine.store(request, b"answer") is False
            assert await engine.astore(request, b"answer") is False
        assert engine.stats()["errors"].get("lookup", 0) >= 1
    finally:
        await engine.aclose()
        engine.close()


# -- 3. engine= or settings, not both ------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [
        {"threshold": 0.5},
        {"namespace": "other"},
        {"redis_url": "redis://127.0.0.1:1"},
        {"ttl": 60},
        {"ttl": None},
        {"sliding_ttl": True},
    ],
)
def test_semantic_cache_refuses_engine_and_settings(settings: dict[str, object]) -> None:
    engine = CacheEngine(_closed_url(), validate=False)
    try:
        with pytest.raises(ConfigurationError) as info:
            SemanticCache(engine=engine, **settings)  # type: ignore[arg-type]
        message = str(info.value)
        assert "either engine= or engine settings" in message
        assert next(iter(settings)) in message
    finally:
        engine.close()


def test_semantic_cache_accepts_an_engine_alone() -> None:
    engine = CacheEngine(_closed_url(), validate=False)
    try:
        assert SemanticCache(engine=engine, tenant="acme").engine is engine
    finally:
        engine.close()


# -- 4. the environment --------------------------------------------------------------------------
def test_threshold_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCACHE_THRESHOLD", "0.77")
    url = _closed_url()
    engine = CacheEngine(url, validate=False)
    explicit = CacheEngine(url, validate=False, threshold=0.5)
    zero = CacheEngine(url, validate=False, threshold=0.0)
    try:
        assert engine.config.threshold == 0.77
        assert explicit.config.threshold == 0.5  # an explicit argument wins over the env
        assert zero.config.threshold == 0.0  # even a falsy one
    finally:
        for e in (engine, explicit, zero):
            e.close()


def test_invalid_environment_value_raises_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEMCACHE_THRESHOLD", "2")
    with pytest.raises(ConfigurationError, match="threshold"):
        CacheEngine(_closed_url(), validate=False)


def test_redis_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _closed_url()
    monkeypatch.setenv("SEMCACHE_REDIS_URL", url)
    engine = CacheEngine(validate=False)
    try:
        assert engine.config.redis_url == url
    finally:
        engine.close()


def test_explicit_ttl_none_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCACHE_TTL", "60")
    url = _closed_url()
    from_env = CacheEngine(url, validate=False)
    never = CacheEngine(url, validate=False, ttl=None)
    over_config = CacheEngine(url, validate=False, config=build_config(ttl=5), ttl=None)
    try:
        assert from_env.config.ttl == 60
        assert never.config.ttl is None  # "never expire" is a value, not "not given"
        assert over_config.config.ttl is None
    finally:
        for e in (from_env, never, over_config):
            e.close()


@pytest.mark.parametrize("cluster", [None, True])
def test_a_list_of_cluster_nodes_is_refused_with_the_fix(cluster: bool | None) -> None:
    """``redis://h:7400,h:7401`` (a list of nodes) is not a Redis URL: the error says to
    give any one node's URL, detection or not."""
    with pytest.raises(ConfigurationError, match="the URL of any one node"):
        CacheEngine("redis://127.0.0.1:7400,127.0.0.1:7401/0", cluster=cluster)
