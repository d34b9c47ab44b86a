"""Fixtures shared by the integration tests: both drivers, and LlamaIndex's globals."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from llama_index.core import Settings
from llama_index_instrumentation import get_dispatcher

from tests.conftest import PATIENT_SOCKET_TIMEOUT
from tests.integration.drivers import DRIVERS, Driver
from tests.integration.test_llamaindex_llm import Recorder, close_llamaindex_loop

SOCKET_TIMEOUT_ENV = "SEMCACHE_SOCKET_TIMEOUT"

# Modules whose tests run on one Redis and on the loopback Redis Cluster (ids
# ``[node]``/``[cluster]``): the cache must behave the same on both.
BOTH_TOPOLOGIES = {
    "test_index_choice",
    "test_invalidation",
    "test_l1",
    "test_langchain_cache",
    "test_llamaindex_llm",
    "test_read_script",
    "test_shadow",
    "test_tenant_isolation",
    "test_ttl",
}


# Tests of those modules that only mean something on one node (not generated for the
# cluster, rather than skipped there): ACL users are per node on a cluster.
NODE_ONLY = {"test_a_refused_script_falls_back_to_separate_reads"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in BOTH_TOPOLOGIES and "redis_url" in metafunc.fixturenames:
        topologies = ["node"] if metafunc.function.__name__ in NODE_ONLY else ["node", "cluster"]
        metafunc.parametrize("redis_url", topologies, indirect=True, scope="session")


@pytest.fixture(autouse=True)
def patient_on_both_topologies(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the modules that also run on the cluster, engines made without `make_engine`
    (LangChain's and LlamaIndex's wrappers given a URL) get its patient
    ``socket_timeout`` through the environment too, unless they set their own: the
    loopback cluster on a loaded two-core machine can be slower than the shipped 0.1 s.
    (Not through ``monkeypatch``: an autouse fixture holding it would undo a test's own
    patches only after every other fixture's teardown.)"""
    if request.module.__name__.rsplit(".", 1)[-1] not in BOTH_TOPOLOGIES:
        yield
        return
    saved = os.environ.get(SOCKET_TIMEOUT_ENV)
    os.environ[SOCKET_TIMEOUT_ENV] = str(PATIENT_SOCKET_TIMEOUT)
    try:
        yield
    finally:
        if saved is None:
            del os.environ[SOCKET_TIMEOUT_ENV]
        else:
            os.environ[SOCKET_TIMEOUT_ENV] = saved


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """Runs the test on the sync driver, then on the async one (ids ``[sync]``,
    ``[async]``): wrap each engine, ``engine = driver(make_engine(...))``. The async run
    owns one event loop for the whole test; its engines are ``aclose``d on it at the end
    (tests/integration/drivers.py)."""
    if request.param == "sync":
        yield Driver("sync")
        return
    with asyncio.Runner() as runner:
        driven = Driver("async", runner)
        try:
            yield driven
        finally:
            driven.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """The semcache hit and miss events dispatched during the test."""
    root = get_dispatcher()
    handler = Recorder()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


@pytest.fixture
def settings() -> Iterator[None]:
    """Restore LlamaIndex's global ``Settings`` after the test."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    yield
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved
    close_llamaindex_loop()
