"""`CachedStreamingChatModel` against the embedded Redis: streamed calls are served from
and recorded into the same entries as ``invoke``; broken streams are never stored."""

from __future__ import annotations

import operator
from collections.abc import Callable, Generator, Sequence
from functools import reduce
from typing import cast

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.tools import tool

from langchain_semcache import SemanticCache
from langchain_semcache.streaming import CachedStreamingChatModel, replay_chunks
from semcache_core import CacheEngine, tenant
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import hashed_embedder
from tests.streaming_fake import FakeStreamingChatModel, StreamDropped

QUESTION = "Can you explain in a few words how cache replay of a long answer works?"


@tool
def get_weather(city: str, days: int) -> str:
    """Forecast for a city."""
    return f"sunny in {city} for {days} days"


@pytest.fixture
def engine(make_engine: Callable[..., CacheEngine]) -> CacheEngine:
    return make_engine(embedder=hashed_embedder())


@pytest.fixture
def cache(engine: CacheEngine) -> SemanticCache:
    return SemanticCache(engine=engine)


def _stores(engine: CacheEngine) -> int:
    return int(engine.stats("default")["tenants"]["default"].get("stores", 0))


def _total(chunks: Sequence[BaseMessage]) -> AIMessageChunk:
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    return cast(AIMessageChunk, reduce(operator.add, chunks))


def test_stream_twice_replays_the_same_answer(cache: SemanticCache, engine: CacheEngine) -> None:
    inner = FakeStreamingChatModel()
    model = CachedStreamingChatModel(model=inner, cache=cache)
    first = list(model.stream(QUESTION))
    assert inner.calls == 1 and inner.streams == 1
    assert len(first) > 3  # really streamed from the model

    second = list(model.stream(QUESTION))
    assert inner.calls == 1  # replayed from the cache
    assert len(second) > 3
    assert all(isinstance(c, AIMessageChunk) for c in second)
    a, b = _total(first), _total(second)
    assert b.content == a.content == inner.answer(QUESTION)
    assert b.usage_metadata is not None and a.usage_metadata is not None
    assert b.usage_metadata["output_tokens"] == a.usage_metadata["output_tokens"]
    marker = b.response_metadata["semcache"]
    assert marker["hit"] is True and marker["layer"] == "exact"
    assert second[-1].chunk_position == "last"
    assert _stores(engine) == 1


def test_invoke_then_stream_share_one_entry(cache: SemanticCache) -> None:
    inner = FakeStreamingChatModel(cache=cache)  # the plain model, caching invoke
    model = CachedStreamingChatModel(model=inner, cache=cache)
    answer = inner.invoke(QUESTION)
    assert inner.calls == 1
    streamed = _total(list(model.stream(QUESTION)))
    assert inner.calls == 1 and inner.streams == 0
    assert streamed.content == answer.content
    assert model.invoke(QUESTION).content == answer.content  # the wrapper's invoke too
    assert inner.calls == 1


def test_stream_then_invoke_share_one_entry(cache: SemanticCache) -> None:
    inner = FakeStreamingChatModel(cache=cache)
    model = CachedStreamingChatModel(model=inner, cache=cache)
    messages = [SystemMessage("You are terse."), HumanMessage(QUESTION)]
    streamed = _total(list(model.stream(messages)))
    assert inner.streams == 1
    answer = inner.invoke(messages)
    assert inner.calls == 1  # the plain model's invoke found the streamed entry
    assert answer.content == streamed.content
    assert answer.response_metadata["semcache"]["hit"] is True
    assert answer.usage_metadata is not None and streamed.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == streamed.usage_metadata["input_tokens"]
    # Another system prompt is another conversation: no hit.
    other = [SystemMessage("You are verbose."), HumanMessage(QUESTION)]
    list(model.stream(other))
    assert inner.calls == 2


async def test_astream_twice_and_ainvoke(cache: SemanticCache) -> None:
    inner = FakeStreamingChatModel(cache=cache)
    model = CachedStreamingChatModel(model=inner, cache=cache)
    first = [c async for c in model.astream(QUESTION)]
    second = [c async for c in model.astream(QUESTION)]
    assert inner.calls == 1 and inner.streams == 1
    assert len(second) > 3
    assert _total(second).content == _total(first).content
    assert (await inner.ainvoke(QUESTION)).content == _total(first).content
    sync_replay = _total(list(model.stream(QUESTION)))
    assert sync_replay.content == _total(first).content
    assert inner.calls == 1


def test_tool_call_stream_round_trip(cache: SemanticCache) -> None:
    inner = FakeStreamingChatModel(cache=cache)
    model = CachedStreamingChatModel(model=inner, cache=cache)
    with_tools = model.bind_tools([get_weather])
    question = "What's the weather in Paris?"
    first = _total(list(with_tools.stream(question)))
    assert inner.streams == 1
    assert len(first.tool_calls) == 1 and first.tool_calls[0]["name"] == "get_weather"
    assert isinstance(first.tool_calls[0]["args"], dict)

    second = _total(list(with_tools.stream(question)))
    assert inner.calls == 1
    assert second.tool_calls == first.tool_calls
    assert second.invalid_tool_calls == []

    invoked = inner.bind_tools([get_weather]).invoke(question)  # same llm_string
    assert inner.calls == 1
    assert invoked.tool_calls == first.tool_calls

    plain = _total(list(model.stream(question)))  # without tools: another scope
    assert inner.calls == 2 and plain.tool_calls == []


def test_error_mid_stream_stores_nothing(cache: SemanticCache, engine: CacheEngine) -> None:
    inner = FakeStreamingChatModel(fail_after=3)
    model = CachedStreamingChatModel(model=inner, cache=cache)
    received = []
    with pytest.raises(StreamDropped):
        for chunk in model.stream(QUESTION):
            received.append(chunk)
    assert len(received) == 3
    assert _stores(engine) == 0

    healthy = CachedStreamingChatModel(model=FakeStreamingChatModel(), cache=cache)
    stream = cast(Generator[AIMessageChunk, None, None], healthy.stream(QUESTION))
    next(stream)  # the consumer stops after the first chunk
    stream.close()
    assert _stores(engine) == 0
    list(healthy.stream(QUESTION))
    assert _stores(engine) == 1


async def test_async_error_mid_stream_stores_nothing(
    cache: SemanticCache, engine: CacheEngine
) -> None:
    model = CachedStreamingChatModel(model=FakeStreamingChatModel(fail_after=2), cache=cache)
    with pytest.raises(StreamDropped):
        async for _ in model.astream(QUESTION):
            pass
    assert _stores(engine) == 0


def test_invoke_with_streaming_is_cached_once(cache: SemanticCache, engine: CacheEngine) -> None:
    inner = FakeStreamingChatModel()
    model = CachedStreamingChatModel(model=inner, cache=cache)
    first = model.invoke(QUESTION, stream=True)  # LangChain's cache path drives _stream
    second = model.invoke(QUESTION, stream=True)
    assert inner.streams == 1 and second.content == first.content
    assert _stores(engine) == 1
    assert engine.stats("default")["tenants"]["default"]["requests"] == 2  # no double lookup


def test_non_streaming_model_and_tenants(cache: SemanticCache) -> None:
    inner = FakeSupportChatModel()  # no _stream: a miss is generated, then replayed
    model = CachedStreamingChatModel(model=inner, cache=cache)
    with tenant("acme"):
        acme = _total(list(model.stream(QUESTION)))
        assert len(list(model.stream(QUESTION))) > 1
    assert inner.calls == 1
    with tenant("globex"):
        list(model.stream(QUESTION))
    assert inner.calls == 2
    assert acme.content == inner.answer(QUESTION)


def test_without_a_cache_it_just_streams() -> None:
    inner = FakeStreamingChatModel()
    model = CachedStreamingChatModel(model=inner, cache=False)
    list(model.stream(QUESTION))
    list(model.stream(QUESTION))
    assert inner.streams == 2


def test_replay_chunks_add_up_to_the_message() -> None:
    message = AIMessage(
        content="Hello there, this is a reasonably long answer  with  odd spacing.\n",
        tool_calls=[{"name": "f", "args": {"x": [1, 2], "s": "é"}, "id": "c1"}],
        invalid_tool_calls=[{"name": "g", "args": '{"a": oops}', "id": "c2", "error": None}],
        usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        response_metadata={"model_name": "m"},
    )
    chunks = replay_chunks(message, chunk_chars=8)
    total = _total(chunks)
    assert total.content == message.content
    assert total.tool_calls == message.tool_calls
    assert [c["args"] for c in total.invalid_tool_calls] == ['{"a": oops}']
    assert total.usage_metadata == message.usage_metadata
    assert total.response_metadata == message.response_metadata
    assert len(chunks) > 5


def test_stream_replays_a_hit_of_a_model_that_reports_no_usage(cache: SemanticCache) -> None:
    inner = FakeStreamingChatModel(report_usage=False)
    model = CachedStreamingChatModel(model=inner, cache=cache)
    first = _total(list(model.stream(QUESTION)))
    again = _total(list(model.stream(QUESTION)))
    assert inner.streams == 1
    assert again.content == first.content
    assert again.response_metadata["semcache"]["layer"] == "exact"
    assert again.usage_metadata is None
    invoked = model.invoke(QUESTION)
    assert invoked.content == first.content and inner.calls == 1


async def test_astream_replays_a_hit_of_a_model_that_reports_no_usage(
    cache: SemanticCache,
) -> None:
    inner = FakeStreamingChatModel(report_usage=False)
    model = CachedStreamingChatModel(model=inner, cache=cache)
    first = _total([c async for c in model.astream(QUESTION)])
    again = _total([c async for c in model.astream(QUESTION)])
    assert inner.streams == 1 and again.content == first.content
    assert again.response_metadata["semcache"]["layer"] == "exact"
