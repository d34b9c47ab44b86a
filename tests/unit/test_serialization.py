"""Generations round-trip as data; hostile payloads are rejected, never executed."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from langchain_semcache.serialization import CODEC, decode_generations, encode_generations
from semcache_core.errors import SerializationError


def rich_generation() -> ChatGeneration:
    return ChatGeneration(
        message=AIMessage(
            content="Let me look that up.",
            tool_calls=[{"name": "lookup_order", "args": {"order_id": "42"}, "id": "c1"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
            response_metadata={"model_name": "m", "finish_reason": "tool_calls"},
            additional_kwargs={"refusal": None},
            id="lc_run-123",
        ),
        generation_info={"finish_reason": "tool_calls"},
    )


def test_chat_generation_round_trips() -> None:
    gen = rich_generation()
    [back] = decode_generations(encode_generations([gen]), CODEC)
    assert isinstance(back, ChatGeneration)
    msg = back.message
    assert isinstance(msg, AIMessage)
    assert msg.content == gen.message.content
    assert msg.tool_calls == gen.message.tool_calls  # type: ignore[attr-defined]
    assert msg.usage_metadata == gen.message.usage_metadata  # type: ignore[attr-defined]
    assert msg.response_metadata == gen.message.response_metadata
    assert msg.additional_kwargs == gen.message.additional_kwargs
    assert back.generation_info == gen.generation_info
    assert msg.id is None  # the id named the run that produced it


def test_text_generations_round_trip_exactly() -> None:
    gens = [Generation(text="a", generation_info={"x": 1}), Generation(text="b")]
    assert decode_generations(encode_generations(gens), CODEC) == gens


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        json.dumps({"v": 2, "generations": []}).encode(),
        json.dumps({"v": 1, "generations": []}).encode(),
        json.dumps(
            {
                "v": 1,
                "generations": [{"kind": "chat", "message": {"type": "system", "content": "x"}}],
            }
        ).encode(),
        json.dumps({"v": 1, "generations": [{"kind": "pickle", "data": "gASV"}]}).encode(),
        json.dumps(
            {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "id"}}
        ).encode(),
    ],
)
def test_hostile_or_foreign_payloads_are_rejected(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        decode_generations(payload, CODEC)


def test_unknown_codec_rejected() -> None:
    with pytest.raises(SerializationError):
        decode_generations(encode_generations([Generation(text="a")]), "pickle")


def test_non_data_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        encode_generations([Generation(text="a", generation_info={"obj": object()})])
