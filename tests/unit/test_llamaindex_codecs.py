"""The LlamaIndex adapters' payload codecs: chat responses (tool calls, provider
objects) and query-engine responses round-trip as data; anything else is refused."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic import BaseModel

from llamaindex_semcache.query_engine import RESPONSE_CODEC, decode_response, encode_response
from llamaindex_semcache.serialization import CHAT_CODEC, CachedRecord, decode_chat, encode_chat
from semcache_core import SerializationError


def test_codec_round_trips_tool_calls_and_provider_objects() -> None:
    class FunctionCall(BaseModel):
        name: str
        arguments: str

    class ToolCall(BaseModel):
        id: str
        type: str
        function: FunctionCall

    call = ToolCall(id="c1", type="function", function=FunctionCall(name="f", arguments="{}"))
    response = ChatResponse(
        message=ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[TextBlock(text="ok"), ToolCallBlock(tool_call_id="c1", tool_name="f")],
            additional_kwargs={"tool_calls": [call], "note": {"$record": 1}},
        ),
        raw={"usage": {"total_tokens": 3}},
        additional_kwargs={"total_tokens": 3},
    )
    back = decode_chat(encode_chat(response), CHAT_CODEC)
    (replayed,) = back.message.additional_kwargs["tool_calls"]
    assert isinstance(replayed, CachedRecord)
    assert replayed.function.name == replayed["function"]["name"] == "f"
    assert replayed.model_dump() == call.model_dump(mode="json")
    assert back.message.additional_kwargs["note"] == {"$record": 1}
    assert back.message.blocks == response.message.blocks
    assert back.raw is None  # provider bookkeeping is not stored
    with pytest.raises(SerializationError):
        decode_chat(b'{"v": 2}', CHAT_CODEC)
    with pytest.raises(SerializationError):
        decode_chat(encode_chat(response), "pickle")


def test_codec_is_data_only_and_strict() -> None:
    node = TextNode(id_="n1", text="hello", metadata={"a": 1})
    response = Response(response="hi", source_nodes=[NodeWithScore(node=node, score=0.5)])
    back = decode_response(encode_response(response), RESPONSE_CODEC)
    assert back.response == "hi" and back.source_nodes[0].node.node_id == "n1"
    assert back.source_nodes[0].score == 0.5
    for bad in (b"not json", b'{"v": 2}', b'{"v": 1, "source_nodes": [{"id": 1}]}'):
        with pytest.raises(SerializationError):
            decode_response(bad, RESPONSE_CODEC)
    with pytest.raises(SerializationError):
        decode_response(encode_response(response), "pickle")
