"""Generations to bytes and back, as data only.

Decoding builds nothing but ``Generation``, ``ChatGeneration`` and ``AIMessage`` from
JSON: no pickle, no ``langchain_core.load`` (which can import classes named in the
payload), so a hostile entry in Redis cannot run code. It reads the payload first (a
failure there is a `SerializationError`: the entry is corrupt), then builds LangChain's
objects from what it read (a failure there is LangChain's, not the entry's). Message ids
are dropped: they name the run that produced the answer, not the one it is replayed into.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from cachetools import LRUCache
from langchain_core.messages import AIMessage, BaseMessage, message_to_dict
from langchain_core.outputs import ChatGeneration, Generation
from pydantic import BaseModel

from semcache_core.core.read import share_decoded
from semcache_core.errors import SerializationError
from semcache_core.pricing import Usage

CODEC = "langchain-generations/1"
# Decoded payloads kept (by their bytes), and the largest payload kept.
_DECODED_MAX = 4096
_DECODED_BYTES = 64 * 1024
_decoded: LRUCache[tuple[Any, ...], list[Generation]] = LRUCache(_DECODED_MAX)
_decoded_lock = threading.Lock()
_AI_TYPES = {"ai", "AIMessageChunk"}


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _message_data(message: BaseMessage) -> dict[str, Any]:
    if not isinstance(message, AIMessage):
        raise SerializationError(f"only AI messages are cached, got {type(message).__name__}")
    data = message_to_dict(message)["data"]
    data["id"] = None
    data["type"] = "ai"
    data.pop("tool_call_chunks", None)  # chunks are re-assembled into tool_calls
    return dict(data)


def encode_generations(generations: Sequence[Generation]) -> bytes:
    """Serialize a model's generations.

    Raises:
        SerializationError: a generation holds something that is not data.
    """
    items = []
    for gen in generations:
        if isinstance(gen, ChatGeneration):
            items.append(
                {
                    "kind": "chat",
                    "message": _message_data(gen.message),
                    "generation_info": gen.generation_info,
                }
            )
        elif isinstance(gen, Generation):
            items.append(
                {"kind": "text", "text": gen.text, "generation_info": gen.generation_info}
            )
        else:
            raise SerializationError(f"cannot cache {type(gen).__name__}")
    try:
        return json.dumps(
            {"v": 1, "generations": items}, default=_default, ensure_ascii=False
        ).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"generation is not JSON-serializable: {exc}") from exc


def decode_generations(payload: bytes, codec: str) -> list[Generation]:
    """Rebuild generations from `encode_generations` output (memoized by payload: the
    same bytes always decode to the same generations; the list and its objects are
    shared with other hits, so they are served through `served_copies`).

    Raises:
        SerializationError: the payload is not one we wrote (unknown codec, not JSON,
            another version, the wrong structure): the engine deletes the entry.

    Any other exception comes from LangChain building ``AIMessage`` or a generation
    from data that reads fine (its classes changed, say): the engine keeps the entry
    and ends the lookup as an error.
    """
    # Keyed by the classes that build the value too: what they built is theirs.
    key = (payload, AIMessage, ChatGeneration, Generation)
    memoized = codec == CODEC and len(payload) <= _DECODED_BYTES
    if memoized:
        with _decoded_lock:
            known = _decoded.get(key)
        if known is not None:
            return known
    generations = [
        _generation(kind, body, info) for kind, body, info in _read_generations(payload, codec)
    ]
    if memoized:
        with _decoded_lock:
            _decoded[key] = generations
    return generations


share_decoded(decode_generations)  # the adapter serves copies (`served_copies`)


_CONTAINERS = (dict, list)
_M = TypeVar("_M", bound=BaseModel)


def _fresh(value: Any) -> Any:
    """A copy of JSON-like data (what `_read_generations` reads): new dicts and lists
    all the way down, leaves shared (strings, numbers: immutable)."""
    if type(value) is dict:
        return {k: _fresh(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if type(value) is list:
        return [_fresh(v) if type(v) in _CONTAINERS else v for v in value]
    return value


def served_copies(generations: Sequence[Generation], marker: dict[str, Any]) -> list[Generation]:
    """Copies of decoded generations to hand to LangChain, each AI message carrying the
    hit ``marker`` in ``response_metadata["semcache"]``.

    Decoded generations are shared by every hit on their entry, and LangChain (or the
    caller) changes what it is served (a hit's ``usage_metadata`` gets a
    ``total_cost``): so every mutable part is copied, without validating again what was
    validated when it was decoded.
    """
    out: list[Generation] = []
    for gen in generations:
        info = _fresh(gen.generation_info)
        if isinstance(gen, ChatGeneration):
            message = gen.message
            update = {
                name: _fresh(value)
                for name, value in message.__dict__.items()
                if type(value) in _CONTAINERS and name != "response_metadata"
            }
            update["response_metadata"] = {**_fresh(message.response_metadata), "semcache": marker}
            copy = _copied(message, update)
            out.append(_copied(gen, {"message": copy, "generation_info": info}))
        else:
            out.append(_copied(gen, {"generation_info": info}))
    return out


_set = object.__setattr__


def _copied(model: _M, update: dict[str, Any]) -> _M:
    """``model.model_copy(update=update)`` for ``update`` of declared fields, without
    the generic `copy.copy` dispatch (half its cost; this runs on every hit). Models
    with private attributes or extra fields take pydantic's own path."""
    if getattr(model, "__pydantic_private__", None) or model.__pydantic_extra__:
        return model.model_copy(update=update)
    cls = type(model)
    new = cls.__new__(cls)
    fields = model.__dict__.copy()
    fields.update(update)
    _set(new, "__dict__", fields)
    _set(new, "__pydantic_extra__", None if model.__pydantic_extra__ is None else {})
    _set(new, "__pydantic_fields_set__", model.__pydantic_fields_set__ | update.keys())
    _set(new, "__pydantic_private__", None)
    return new


def _read_generations(payload: bytes, codec: str) -> list[tuple[str, Any, dict[str, Any] | None]]:
    """The payload's generations as plain data: ``(kind, message data or text, info)``."""
    if codec != CODEC:
        raise SerializationError(f"unknown codec {codec!r}")
    try:
        doc = json.loads(payload.decode("utf-8", "surrogatepass"))
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise ValueError("unknown payload version")
        items = doc.get("generations")
        if not isinstance(items, list) or not items:
            raise ValueError("no generations")
        out: list[tuple[str, Any, dict[str, Any] | None]] = []
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("a generation must be an object")
            info = item.get("generation_info")
            if info is not None and not isinstance(info, dict):
                raise ValueError("generation_info must be an object")
            kind = item.get("kind")
            if kind == "chat":
                data = item.get("message")
                if not isinstance(data, dict) or data.get("type") not in _AI_TYPES:
                    raise ValueError("only AI messages can be replayed")
                if not isinstance(data.get("content"), (str, list)):
                    raise ValueError("message content must be a string or a list")
                out.append((kind, data, info))
            elif kind == "text":
                if not isinstance(item.get("text"), str):
                    raise ValueError("text must be a string")
                out.append((kind, item["text"], info))
            else:
                raise ValueError("unknown generation kind")
        return out
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise SerializationError(f"cached generations are unreadable: {exc}") from exc


def _generation(kind: str, body: Any, info: dict[str, Any] | None) -> Generation:
    if kind == "chat":
        return ChatGeneration(message=AIMessage(**body), generation_info=info)
    return Generation(text=body, generation_info=info)


def generations_text(generations: Sequence[Generation]) -> str:
    """The answer as text, for the shadow judge: each generation's text, and an AI
    message's tool calls (name and arguments) when it has any."""
    parts = []
    for gen in generations:
        parts.append(gen.text)
        if isinstance(gen, ChatGeneration) and isinstance(gen.message, AIMessage):
            for call in gen.message.tool_calls:
                parts.append(json.dumps([call["name"], call["args"]], sort_keys=True))
    return "\n".join(p for p in parts if p)


def generations_usage(generations: Sequence[Generation], llm_string: str = "") -> Usage | None:
    """Token usage of the call that produced ``generations``, for the cost saved by hits.

    Sums the AI messages' ``usage_metadata``; the model is the message's
    ``response_metadata["model_name"]`` (or ``"model"``), else the ``model_name`` /
    ``model`` in LangChain's ``llm_string``. ``None`` when no usage was reported: a
    hit then saves zero tokens, never a guess.
    """
    inp = out = 0
    seen = False
    model: str | None = None
    for gen in generations:
        if isinstance(gen, ChatGeneration) and isinstance(gen.message, AIMessage):
            usage = gen.message.usage_metadata
            if usage:
                seen = True
                inp += int(usage.get("input_tokens") or 0)
                out += int(usage.get("output_tokens") or 0)
            meta = gen.message.response_metadata or {}
            model = model or meta.get("model_name") or meta.get("model")
    if not seen:
        return None
    return Usage(input_tokens=inp, output_tokens=out, model=model or _llm_string_model(llm_string))


_MODEL_IN_TEXT = re.compile(r"""['"]?(?:model_name|model)['"]?\s*[:=,]\s*['"]([^'"]+)['"]""")


def _llm_string_model(llm_string: str) -> str | None:
    """The model named in an ``llm_string`` (LangChain's serialized model parameters,
    then ``---`` and the call's; or ``str(sorted(params.items()))``)."""
    match = _MODEL_IN_TEXT.search(llm_string)
    return match.group(1) if match else None
