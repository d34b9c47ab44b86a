"""Agent loops through the LangChain adapter: a rerun of the same loop is served from
the cache at every step, including the steps after a tool result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import tool

from langchain_semcache import CachedStreamingChatModel, SemanticCache
from semcache_core import CacheEngine
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.streaming_fake import FakeStreamingChatModel


@tool
def order_status(order_id: str) -> str:
    """Look up the status of an order."""
    return f"order {order_id!r} shipped yesterday"


def run_agent(bound: Runnable[Any, BaseMessage], question: str) -> list[AIMessage]:
    """A real tool-calling loop: call the model, run the tools it asks for, repeat."""
    messages: list[BaseMessage] = [HumanMessage(question)]
    answers: list[AIMessage] = []
    for _ in range(5):
        ai = bound.invoke(messages)
        assert isinstance(ai, AIMessage)
        answers.append(ai)
        messages.append(ai)
        if not ai.tool_calls:
            return answers
        for call in ai.tool_calls:
            result = order_status.invoke(call["args"])
            messages.append(ToolMessage(content=result, tool_call_id=call["id"]))
    raise AssertionError("the agent did not finish")


def layers(answers: list[AIMessage]) -> list[str | None]:
    return [(a.response_metadata.get("semcache") or {}).get("layer") for a in answers]


@pytest.mark.parametrize("report_usage", [True, False])
def test_rerun_of_a_tool_calling_loop_hits_every_step(
    make_engine: Callable[..., CacheEngine], embeddings: Any, report_usage: bool
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=embeddings))
    model = FakeSupportChatModel(cache=cache, report_usage=report_usage)
    bound = model.bind_tools([order_status])
    first = run_agent(bound, "Where is my order A-17?")
    assert len(first) == 2 and model.calls == 2 and layers(first) == [None, None]
    again = run_agent(bound, "Where is my order A-17?")
    # the step after the ToolMessage used to miss: the replayed AIMessage carried the
    # hit marker and LangChain's total_cost, and both entered the next prompt's key
    assert model.calls == 2
    assert layers(again) == ["exact", "exact"]
    assert [a.content for a in again] == [a.content for a in first]
    assert again[0].tool_calls == first[0].tool_calls


def test_rerun_of_a_streaming_tool_loop_hits_every_step(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=embeddings))
    inner = FakeStreamingChatModel(report_usage=False)
    bound = CachedStreamingChatModel(model=inner, cache=cache).bind_tools([order_status])

    def streamed(messages: list[BaseMessage]) -> AIMessage:
        total: Any = None
        for chunk in bound.stream(messages):
            total = chunk if total is None else total + chunk
        return AIMessage(
            content=total.content,
            tool_calls=total.tool_calls,
            response_metadata=total.response_metadata,
            usage_metadata=total.usage_metadata,
        )

    class Streamer(Runnable[Any, BaseMessage]):
        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> BaseMessage:
            return streamed(input)

    run_agent(Streamer(), "Where is my order B-2?")
    assert inner.streams == 2
    again = run_agent(Streamer(), "Where is my order B-2?")
    assert inner.streams == 2 and layers(again) == ["exact", "exact"]
