"""TTL validation everywhere a TTL is accepted, and passwords kept out of messages."""

from __future__ import annotations

import logging
import math

import pytest

from semcache_core import CacheEngine, cache_context
from semcache_core.config import redacted_url
from semcache_core.errors import BackendUnavailableError, ConfigurationError


@pytest.mark.parametrize("ttl", [math.inf, math.nan, 1e300, -1.0])
def test_config_ttl_must_be_finite_and_bounded(ttl: float) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        CacheEngine("redis://127.0.0.1:1/0", validate=False, ttl=ttl)


@pytest.mark.parametrize("ttl", [-1, math.nan, math.inf, "5", True, 1e300])
def test_request_and_context_ttl_validated(ttl: object) -> None:
    engine = CacheEngine("redis://127.0.0.1:1/0", validate=False, dims=8)
    try:
        with pytest.raises(ConfigurationError, match="ttl"):
            engine.request("q", ttl=ttl)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="ttl"), cache_context(ttl=ttl):  # type: ignore[arg-type]
            pass
        assert engine.request("q", ttl=0).ttl == 0
        assert engine.request("q", ttl=None).ttl is None
    finally:
        engine.close()


def test_password_never_in_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    url = "redis://user:TOPSECRET@127.0.0.1:1/0"
    assert redacted_url(url) == "redis://user:***@127.0.0.1:1/0"
    assert redacted_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    with pytest.raises(BackendUnavailableError) as info:
        CacheEngine(url, require_redis=True, dims=8)
    assert "TOPSECRET" not in str(info.value) and "***" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="semcache"):
        engine = CacheEngine(url, dims=8)
        engine.close()
    assert caplog.text and "TOPSECRET" not in caplog.text
    assert "TOPSECRET" not in repr(engine.config)
