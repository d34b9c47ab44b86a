"""Fixtures shared by the LlamaIndex integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llama_index.core import Settings
from llama_index_instrumentation import get_dispatcher

from tests.integration.test_llamaindex_llm import Recorder, close_llamaindex_loop


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
