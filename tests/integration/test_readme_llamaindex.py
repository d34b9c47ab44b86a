"""The README's LlamaIndex section is complete working code: its Python block runs as
written (the bundled MiniLM and the fake LLMs; ``SEMCACHE_REDIS_URL`` points it at the
embedded Redis, ``SEMCACHE_NAMESPACE`` at this test's namespace)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Settings

from semcache_core import CacheEngine
from semcache_core.embedding_store import EmbeddingStore
from tests.integration.test_llamaindex_llm import close_llamaindex_loop

README = Path(__file__).resolve().parents[2] / "README.md"


def llamaindex_block() -> str:
    section = README.read_text(encoding="utf-8").split("\n## LlamaIndex\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


@pytest.fixture
def isolated(redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SEMCACHE_REDIS_URL", redis_url)
    monkeypatch.setenv("SEMCACHE_NAMESPACE", namespace)
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    # A sync query engine runs coroutines on the thread's event loop (llama_index's
    # asyncio_run), creating one if there is none; the README's asyncio.run() later
    # unsets it without closing it. Give it one to use, and close that one here.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved
    loop.close()
    close_llamaindex_loop()
    cleaner = CacheEngine(redis_url, namespace=namespace, validate=False)
    cleaner.drop_index()
    cleaner.close()
    store = EmbeddingStore(redis_url=redis_url, namespace=namespace)
    store.clear()
    store.close()


def test_readme_llamaindex_block_runs_as_written(isolated: None) -> None:
    code = llamaindex_block()
    assert "wrap(llm, redis_url=REDIS_URL, embed_model=minilm()" in code  # no hand-built engine
    scope: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), scope)
    # Model calls: the query (1; the paraphrase hit), predict (1; the repeat hit), the
    # first acme agent run (2 steps), none for the second, globex's run (2 steps).
    assert scope["llm"].calls == 6
    Settings.embed_model.store.close()
