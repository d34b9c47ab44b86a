"""LangChain's own conformance suites for BaseCache implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_tests.integration_tests.cache import AsyncCacheTestSuite, SyncCacheTestSuite

from langchain_semcache import SemanticCache
from semcache_core import CacheEngine


class TestSemanticCacheSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, make_engine: Callable[..., CacheEngine], embeddings: Any) -> SemanticCache:
        return SemanticCache(engine=make_engine(embedder=embeddings))


class TestSemanticCacheAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(
        self, make_engine: Callable[..., CacheEngine], embeddings: Any
    ) -> SemanticCache:
        return SemanticCache(engine=make_engine(embedder=embeddings))
