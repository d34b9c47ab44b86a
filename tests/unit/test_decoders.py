"""Every adapter decoder: `SerializationError` only for a payload it cannot read.

For each decoder, a payload that is not JSON (or names another codec) raises
`SerializationError` (the engine deletes the entry); a well-formed payload that the
framework class it builds refuses raises the framework's own exception, never
`SerializationError` (the engine keeps the entry). The refusal is staged by replacing,
in the decoder's module, one framework class it builds with one that raises.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LogProb,
    MessageRole,
)
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic import BaseModel, ValidationError, field_validator

import langchain_semcache.serialization as lc
import llamaindex_semcache.query_engine as qe
import llamaindex_semcache.serialization as li
from semcache_core.errors import SerializationError


class Refused(ValueError):
    """What the stand-in framework classes raise: a ValueError, as pydantic's
    ``ValidationError`` is (and as the decoders' own data checks raise)."""


def refusing(cls: type) -> type:
    """A subclass of ``cls`` whose construction and validation raise `Refused`."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise Refused(cls.__name__)

    return type(
        f"Refusing{cls.__name__}",
        (cls,),
        {"__init__": fail, "model_validate": classmethod(fail)},
    )


def _node() -> NodeWithScore:
    node = TextNode(id_="n1", text="hello", metadata={"a": 1})
    return NodeWithScore(node=node, score=0.5)


def _chat() -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content="hi"),
        logprobs=[[LogProb(token="hi", logprob=-0.1, bytes=[104, 105])]],
    )


Decoder = Callable[[bytes, str], Any]
# (decoder, a payload it wrote, its codec, the module it builds in, the classes it builds)
CASES: dict[str, tuple[Decoder, bytes, str, ModuleType, tuple[str, ...]]] = {
    "langchain chat": (
        lc.decode_generations,
        lc.encode_generations([ChatGeneration(message=AIMessage(content="hi"))]),
        lc.CODEC,
        lc,
        ("AIMessage", "ChatGeneration"),
    ),
    "langchain text": (
        lc.decode_generations,
        lc.encode_generations([Generation(text="hi")]),
        lc.CODEC,
        lc,
        ("Generation",),
    ),
    "llamaindex chat": (
        li.decode_chat,
        li.encode_chat(_chat()),
        li.CHAT_CODEC,
        li,
        ("ChatMessage", "ChatResponse", "LogProb"),
    ),
    "llamaindex completion": (
        li.decode_completion,
        li.encode_completion(CompletionResponse(text="hi")),
        li.COMPLETION_CODEC,
        li,
        ("CompletionResponse",),
    ),
    "query engine response": (
        qe.decode_response,
        qe.encode_response(Response(response="hi", source_nodes=[_node()])),
        qe.RESPONSE_CODEC,
        qe,
        ("Response", "TextNode", "NodeWithScore"),
    ),
    "retriever nodes": (
        qe.decode_nodes,
        qe.encode_nodes([_node()]),
        qe.NODES_CODEC,
        qe,
        ("TextNode", "NodeWithScore"),
    ),
}
BUILDS = [(name, cls) for name, case in CASES.items() for cls in case[4]]


@pytest.mark.parametrize("name", list(CASES))
def test_a_payload_that_is_not_data_is_a_serialization_error(name: str) -> None:
    decode, payload, codec, _, _ = CASES[name]
    assert decode(payload, codec) is not None  # the written payload reads back
    for bad in (b"\xff not json {", b"[1, 2]", b'{"v": 2}'):
        with pytest.raises(SerializationError):
            decode(bad, codec)
    with pytest.raises(SerializationError):
        decode(payload, "pickle")


@pytest.mark.parametrize(("name", "cls"), BUILDS)
def test_a_framework_refusing_well_formed_data_is_not_a_serialization_error(
    monkeypatch: pytest.MonkeyPatch, name: str, cls: str
) -> None:
    decode, payload, codec, module, _ = CASES[name]
    monkeypatch.setattr(module, cls, refusing(getattr(module, cls)))
    with pytest.raises(Refused):
        decode(payload, codec)


class Ticket(BaseModel):
    order: int
    note: str

    @field_validator("note")
    @classmethod
    def not_legacy(cls, value: str) -> str:
        if value == "legacy":
            raise ValueError("this version refuses legacy notes")
        return value


def test_structured_output_the_class_refuses_is_its_validation_error() -> None:
    payload = li.encode_structured(Ticket(order=1, note="new"))
    assert li.decode_structured(Ticket, payload, li.STRUCTURED_CODEC) == Ticket(
        order=1, note="new"
    )
    legacy = b'{"order": 1, "note": "legacy"}'
    with pytest.raises(ValidationError):  # the class's own rule: not corruption
        li.decode_structured(Ticket, legacy, li.STRUCTURED_CODEC)
    for bad in (b"\xff not json {", b'{"order": 1,'):
        with pytest.raises(SerializationError):
            li.decode_structured(Ticket, bad, li.STRUCTURED_CODEC)
    with pytest.raises(SerializationError):
        li.decode_structured(Ticket, payload, "pickle")
