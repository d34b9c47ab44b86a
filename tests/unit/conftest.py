"""Unit tests run without Redis: a unit test that asks for the session Redis (``redis_url``,
``raw_redis``, ``make_engine``...) fails here instead of starting one. Move it to
tests/integration."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def redis_server() -> None:
    pytest.fail("tests/unit use no Redis: this test belongs in tests/integration")
