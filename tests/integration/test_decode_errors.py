"""Only undecodable data is corrupt, against the real embedded Redis.

A decoder that raises `SerializationError` says the stored payload is not data it can
read: the engine deletes the entry and counts it corrupt. Any other exception is the
framework failing to build its objects from data that reads fine (an upgrade changed
``AIMessage``, say): the lookup ends as `Outcome.ERROR` (served as a miss), the entry is
kept untouched, the error is counted under ``"decode"`` and logged without the answer's
text, and the entry serves again once the framework builds it.

The framework failure is staged by monkeypatching the class a decoder builds with one
that refuses the stored data the way pydantic does (a ``ValidationError`` quoting it).
Embeddings are constant (every text the same vector): these tests are about what happens
to a candidate, not about similarity.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from pydantic import TypeAdapter

import langchain_semcache.serialization as lc_serialization
import llamaindex_semcache.serialization as li_serialization
from langchain_semcache import SemanticCache
from llamaindex_semcache.llm import wrap
from semcache_core import CacheEngine, Outcome, SerializationError
from semcache_core.engine import LookupResult
from semcache_core.request import CacheRequest
from semcache_demo.llamaindex_fakes import FakeLLM
from tests.conftest import constant_embedder

ANSWER = "Refunds take five business days."
QUESTION = "How long does a refund take?"
OTHER_QUESTION = "When do I get my money back?"  # the same vector: a semantic candidate


class RecordingEngine(CacheEngine):
    """A real engine that keeps every lookup's result, so a test can read the outcome of
    a lookup an adapter made (LangChain and LlamaIndex turn an error into a miss)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[LookupResult] = []

    def lookup(self, request: CacheRequest, *args: Any, **kwargs: Any) -> LookupResult:
        result = super().lookup(request, *args, **kwargs)
        self.results.append(result)
        return result

    async def alookup(self, request: CacheRequest, *args: Any, **kwargs: Any) -> LookupResult:
        result = await super().alookup(request, *args, **kwargs)
        self.results.append(result)
        return result


@pytest.fixture
def engine(redis_url: str, namespace: str) -> Iterator[RecordingEngine]:
    engine = RecordingEngine(
        redis_url, namespace=namespace, embedder=constant_embedder(), threshold=0.5
    )
    yield engine
    engine.close()
    cleaner = CacheEngine(redis_url, namespace=namespace, validate=False)
    cleaner.drop_index()
    cleaner.close()


def entry_keys(client: redis.Redis, engine: CacheEngine) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=engine.layout.scan_pattern()))


def refuse(data: Any) -> None:
    """Fail as pydantic does on data it will not take: a ValidationError quoting it."""
    TypeAdapter(int).validate_python(json.dumps(data, default=str))


def tenant_stats(engine: CacheEngine) -> dict[str, Any]:
    return engine.stats()["tenants"]["default"]  # type: ignore[no-any-return]


def assert_kept_after_decode_error(
    engine: RecordingEngine,
    client: redis.Redis,
    key: str,
    before: dict[bytes, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The last lookup ended as a decode error and left the entry as it was."""
    assert engine.results[-1].outcome is Outcome.ERROR
    assert engine.results[-1].value is None
    assert client.hgetall(key) == before  # not deleted, not rewritten
    assert engine.stats()["errors"] == {"decode": 1}
    assert tenant_stats(engine)["corrupt_entries"] == 0
    logged = [r.getMessage() for r in caplog.records if r.name == "semcache"]
    assert any("decode failed" in m and "ValidationError" in m for m in logged), logged
    assert ANSWER not in caplog.text  # neither the message nor the traceback quotes it


def assert_deleted_as_corrupt(
    engine: RecordingEngine, client: redis.Redis, key: str, errors_before: dict[str, int]
) -> None:
    """The last lookup deleted the entry as corrupt, a miss and no error."""
    assert engine.results[-1].outcome is Outcome.MISS
    assert not client.exists(key)
    assert tenant_stats(engine)["corrupt_entries"] == 1
    assert engine.stats()["errors"] == errors_before


# -- the engine's contract, with a custom decoder -----------------------------------------
@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("layer", ["exact", "semantic"])
async def test_engine_keeps_an_entry_its_decoder_cannot_build_and_deletes_an_unreadable_one(
    engine: RecordingEngine,
    raw_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    driver: str,
    layer: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="semcache")
    failure: list[Exception] = []

    def decode(payload: bytes, codec: str) -> Any:
        if failure:
            raise failure[0]
        return json.loads(payload)

    async def lookup(request: CacheRequest) -> LookupResult:
        if driver == "sync":
            return engine.lookup(request, decode=decode)
        return await engine.alookup(request, decode=decode)

    stored = engine.request("prompt A", question=QUESTION)
    probe = stored if layer == "exact" else engine.request("prompt B", question=OTHER_QUESTION)
    assert engine.store(stored, json.dumps(ANSWER).encode())
    [key] = entry_keys(raw_redis, engine)
    before = raw_redis.hgetall(key)

    # The framework refuses well-formed data (its message quotes the answer): kept.
    failure.append(ValueError(f"cannot build an answer from {ANSWER!r}"))
    await lookup(probe)
    assert raw_redis.hgetall(key) == before
    assert engine.results[-1].outcome is Outcome.ERROR
    assert engine.stats()["errors"] == {"decode": 1}
    assert tenant_stats(engine)["corrupt_entries"] == 0
    assert "decode failed" in caplog.text and "ValueError" in caplog.text
    assert ANSWER not in caplog.text

    # Once it builds again, the same entry serves.
    failure.clear()
    hit = await lookup(probe)
    assert hit.hit and hit.key == key and hit.value == ANSWER
    assert hit.outcome is (Outcome.EXACT_HIT if layer == "exact" else Outcome.SEMANTIC_HIT)

    # The decoder says the payload is not data it can read: corrupt, deleted.
    failure.append(SerializationError("not a payload this decoder wrote"))
    await lookup(probe)
    assert_deleted_as_corrupt(engine, raw_redis, key, {"decode": 1})


# -- LangChain ----------------------------------------------------------------------------
class RefusingAIMessage(AIMessage):
    """An ``AIMessage`` that no longer takes the fields an older LangChain wrote."""

    def __init__(self, **data: Any) -> None:
        refuse(data)


def _langchain_lookup(cache: SemanticCache, driver: str) -> Callable[[str], Awaitable[Any]]:
    async def lookup(prompt: str) -> Any:
        if driver == "sync":
            return cache.lookup(prompt, "llm-string")
        return await cache.alookup(prompt, "llm-string")

    return lookup


def _store_langchain_answer(cache: SemanticCache) -> None:
    cache.update(QUESTION, "llm-string", [ChatGeneration(message=AIMessage(content=ANSWER))])


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("layer", ["exact", "semantic"])
async def test_langchain_entry_that_aimessage_refuses_is_kept_and_serves_again(
    engine: RecordingEngine,
    raw_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    driver: str,
    layer: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="semcache")
    cache = SemanticCache(engine=engine)
    lookup = _langchain_lookup(cache, driver)
    _store_langchain_answer(cache)
    [key] = entry_keys(raw_redis, engine)
    before = raw_redis.hgetall(key)
    prompt = QUESTION if layer == "exact" else OTHER_QUESTION

    monkeypatch.setattr(lc_serialization, "AIMessage", RefusingAIMessage)
    assert await lookup(prompt) is None  # a miss for LangChain: the model is called
    assert_kept_after_decode_error(engine, raw_redis, key, before, caplog)

    monkeypatch.undo()
    [served] = await lookup(prompt)
    assert isinstance(served, ChatGeneration) and served.message.content == ANSWER
    assert engine.results[-1].key == key
    assert served.message.response_metadata["semcache"]["layer"] == layer


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("layer", ["exact", "semantic"])
async def test_langchain_entry_that_is_not_json_is_deleted_as_corrupt(
    engine: RecordingEngine, raw_redis: redis.Redis, driver: str, layer: str
) -> None:
    cache = SemanticCache(engine=engine)
    lookup = _langchain_lookup(cache, driver)
    _store_langchain_answer(cache)
    [key] = entry_keys(raw_redis, engine)
    raw_redis.hset(key, "payload", b"\xff not json {")

    assert await lookup(QUESTION if layer == "exact" else OTHER_QUESTION) is None
    assert_deleted_as_corrupt(engine, raw_redis, key, {})


# -- LlamaIndex ---------------------------------------------------------------------------
class RefusingChatMessage(ChatMessage):
    """A ``ChatMessage`` that no longer validates the blocks an older LlamaIndex wrote."""

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> RefusingChatMessage:
        refuse(obj)
        raise AssertionError("refuse() raises")


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def _llamaindex_chat(llm: Any, driver: str) -> Callable[[str], Awaitable[ChatResponse]]:
    async def chat(question: str) -> ChatResponse:
        if driver == "sync":
            return llm.chat(user(question))  # type: ignore[no-any-return]
        return await llm.achat(user(question))  # type: ignore[no-any-return]

    return chat


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("layer", ["exact", "semantic"])
async def test_llamaindex_entry_that_chatmessage_refuses_is_kept_and_serves_again(
    engine: RecordingEngine,
    raw_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    driver: str,
    layer: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="semcache")
    fake = FakeLLM()
    chat = _llamaindex_chat(wrap(fake, engine), driver)
    first = await chat(QUESTION)
    [key] = entry_keys(raw_redis, engine)
    before = raw_redis.hgetall(key)
    answer = first.message.content

    monkeypatch.setattr(li_serialization, "ChatMessage", RefusingChatMessage)
    if layer == "exact":
        # The model must not answer here: its answer would be stored over the entry and
        # hide whether the lookup kept it. It fails, so the call makes a second,
        # stale-if-error lookup, which cannot build the entry either: the model's error.
        fake.fail_with(RuntimeError("the model is down"))
        with pytest.raises(RuntimeError, match="the model is down"):
            await chat(QUESTION)
        fake.fail_with(None)
        lookups = 2
    else:
        missed = await chat(OTHER_QUESTION)  # a miss: the model answers
        assert missed.additional_kwargs.get("semcache") is None
        assert fake.calls == 2
        lookups = 1
    assert [r.outcome for r in engine.results[1:]] == [Outcome.ERROR] * lookups
    assert raw_redis.hgetall(key) == before
    assert engine.stats()["errors"] == {"decode": lookups}
    assert tenant_stats(engine)["corrupt_entries"] == 0
    assert "decode failed" in caplog.text and "ValidationError" in caplog.text
    assert answer and answer not in caplog.text

    monkeypatch.undo()
    calls = fake.calls
    served = await chat(QUESTION)
    assert served.message.content == answer
    assert served.additional_kwargs["semcache"]["layer"] == "exact"
    assert engine.results[-1].key == key
    assert fake.calls == calls


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("layer", ["exact", "semantic"])
async def test_llamaindex_entry_that_is_not_json_is_deleted_as_corrupt(
    engine: RecordingEngine, raw_redis: redis.Redis, driver: str, layer: str
) -> None:
    fake = FakeLLM()
    chat = _llamaindex_chat(wrap(fake, engine), driver)
    await chat(QUESTION)
    [key] = entry_keys(raw_redis, engine)
    raw_redis.hset(key, "payload", b"\xff not json {")

    answer = await chat(QUESTION if layer == "exact" else OTHER_QUESTION)
    assert answer.additional_kwargs.get("semcache") is None  # a miss: the model answered
    assert fake.calls == 2
    assert engine.results[1].outcome is Outcome.MISS
    assert tenant_stats(engine)["corrupt_entries"] == 1
    assert engine.stats()["errors"] == {}
    if layer == "semantic":
        assert not raw_redis.exists(key)
    else:  # deleted, then written again with the model's answer
        assert raw_redis.hget(key, "payload") != b"\xff not json {"
