"""The question embedded for a chat prompt is the last human message's text, never the
JSON of the message list; everything else is context matched exactly."""

from __future__ import annotations

from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_semcache.prompt import parse_prompt


def test_chat_prompt_question_is_last_human_text() -> None:
    p = parse_prompt(dumps([SystemMessage("be brief"), HumanMessage("How do I reset it?")]))
    assert p.kind == "chat"
    assert p.question == "How do I reset it?"
    assert "How do I reset it?" not in str(p.context)
    assert "be brief" in str(p.context)


def test_context_differs_with_system_prompt_and_history_but_not_question() -> None:
    base = parse_prompt(dumps([SystemMessage("a"), HumanMessage("q1")]))
    other_q = parse_prompt(dumps([SystemMessage("a"), HumanMessage("q2")]))
    other_sys = parse_prompt(dumps([SystemMessage("b"), HumanMessage("q1")]))
    history = parse_prompt(
        dumps([SystemMessage("a"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("q1")])
    )
    assert base.context == other_q.context
    assert base.context != other_sys.context
    assert base.context != history.context


def test_multimodal_text_blocks_embedded_images_in_context() -> None:
    msg = HumanMessage(
        content=[
            {"type": "text", "text": "What is in"},
            {"type": "image_url", "image_url": {"url": "http://x/1.png"}},
            {"type": "text", "text": "this picture?"},
        ]
    )
    p = parse_prompt(dumps([msg]))
    assert p.question == "What is in\nthis picture?"
    assert "http://x/1.png" in str(p.context)


def test_agent_step_after_tool_result_is_exact_only() -> None:
    msgs = [
        HumanMessage("weather?"),
        AIMessage("", tool_calls=[{"name": "w", "args": {}, "id": "1"}]),
        ToolMessage("sunny", tool_call_id="1"),
    ]
    assert parse_prompt(dumps(msgs)).question is None


def test_legacy_string_prompt() -> None:
    p = parse_prompt("Tell me a joke")
    assert (p.kind, p.question, p.context) == ("text", "Tell me a joke", None)
    # JSON-looking strings that are not LangChain messages stay text
    assert parse_prompt('["a", "b"]').kind == "text"
    assert parse_prompt("[not json").kind == "text"


def test_cache_bookkeeping_on_a_replayed_ai_message_never_changes_the_key() -> None:
    call = {"name": "order_status", "args": {"order_id": "A-17"}, "id": "call_1"}
    produced = AIMessage(
        "",
        tool_calls=[call],
        response_metadata={"model_name": "m", "finish_reason": "stop"},
        usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
    )
    replayed = produced.model_copy(
        update={
            "response_metadata": {**produced.response_metadata, "semcache": {"hit": True}},
            "usage_metadata": {**(produced.usage_metadata or {}), "total_cost": 0},
        }
    )
    tool_result = ToolMessage("shipped", tool_call_id="call_1")
    first = parse_prompt(dumps([HumanMessage("Where is A-17?"), produced, tool_result]))
    again = parse_prompt(dumps([HumanMessage("Where is A-17?"), replayed, tool_result]))
    assert again.key == first.key and again.context == first.context
    # a model that reports no usage and no metadata: the replay carries only bookkeeping
    bare = AIMessage("hello")
    bare_replay = bare.model_copy(
        update={
            "response_metadata": {"semcache": {"hit": True}},
            "usage_metadata": {"total_cost": 0},
        }
    )
    follow = HumanMessage("and then?")
    assert (
        parse_prompt(dumps([HumanMessage("hi"), bare_replay, follow])).key
        == parse_prompt(dumps([HumanMessage("hi"), bare, follow])).key
    )
    # what the model said still counts
    other = produced.model_copy(update={"tool_calls": [{**call, "args": {"order_id": "B-2"}}]})
    assert (
        parse_prompt(dumps([HumanMessage("Where is A-17?"), other, tool_result])).key != first.key
    )
