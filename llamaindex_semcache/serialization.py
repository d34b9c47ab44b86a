"""LlamaIndex responses to bytes and back, as data only.

Decoding builds nothing but ``ChatResponse``, ``CompletionResponse``, ``ChatMessage``
(whose content blocks pydantic validates by their ``block_type``), plain JSON values and
`CachedRecord` from JSON: no pickle, no import of a class named in the payload, so a
hostile entry in Redis cannot run code. Only a payload that does not read as the data we
wrote raises `SerializationError` (the entry is corrupt and deleted); LlamaIndex failing
to build its objects from data that reads fine raises what it raises (the entry is kept).

Provider objects in ``additional_kwargs`` (an OpenAI ``ChatCompletionMessageToolCall``,
say) are stored as their JSON dump and come back as `CachedRecord`: a dict that also
reads as attributes, so integrations that parse tool calls with ``call["function"]`` and
those that use ``call.function.name`` both work on a replayed answer. ``raw`` (the
provider's bookkeeping: ids, usage) is not stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LogProb,
    TextBlock,
    ToolCallBlock,
)
from pydantic import BaseModel

from semcache_core.errors import SerializationError
from semcache_core.pricing import Usage

CHAT_CODEC = "llamaindex-chat/1"
COMPLETION_CODEC = "llamaindex-completion/1"
STRUCTURED_CODEC = "llamaindex-structured/1"

# Keys under which providers report token usage; a served hit carries none of them.
USAGE_KEYS = frozenset(
    {
        "usage",
        "usage_metadata",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "prompt_token_count",
        "candidates_token_count",
        "total_token_count",
    }
)
_MAX_REPLAY_CHUNKS = 64

M = TypeVar("M", bound=BaseModel)


class CachedRecord(dict[str, Any]):
    """A provider object replayed from the cache: a dict that also reads as attributes.

    Example:
        >>> call = CachedRecord({"function": CachedRecord({"name": "f"})})
        >>> call.function.name == call["function"]["name"] == "f"
        True
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """A plain-dict copy, as the provider object's ``model_dump`` would give."""
        return json.loads(json.dumps(self))  # type: ignore[no-any-return]


def _data(value: Any) -> Any:
    """Encode a value of ``additional_kwargs`` as JSON data, marking provider objects."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, CachedRecord):
        return {"$record": _data(dict(value))}
    if isinstance(value, Mapping):
        out = {str(k): _data(v) for k, v in value.items()}
        return {"$dict": out} if set(out) <= {"$record", "$dict"} and out else out
    if isinstance(value, (list, tuple)):
        return [_data(v) for v in value]
    if isinstance(value, BaseModel):
        return {"$record": value.model_dump(mode="json")}
    raise SerializationError(f"{type(value).__name__} in additional_kwargs is not data")


def _record(value: Any) -> Any:
    if isinstance(value, dict):
        return CachedRecord({k: _record(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_record(v) for v in value]
    return value


def _undata(value: Any) -> Any:
    if isinstance(value, list):
        return [_undata(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$record"}:
            return _record(value["$record"])
        if set(value) == {"$dict"}:
            value = value["$dict"]
        return {k: _undata(v) for k, v in value.items()}
    return value


def _message(message: ChatMessage) -> dict[str, Any]:
    return {
        "role": message.role.value,
        "blocks": [block.model_dump(mode="json") for block in message.blocks],
        "additional_kwargs": _data(message.additional_kwargs),
    }


def _logprobs(logprobs: list[list[LogProb]] | None) -> Any:
    if logprobs is None:
        return None
    return [[p.model_dump(mode="json") for p in row] for row in logprobs]


def _dumps(doc: dict[str, Any]) -> bytes:
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"response is not JSON-serializable: {exc}") from exc


def encode_chat(response: ChatResponse) -> bytes:
    """Serialize a chat response (message, extra fields, logprobs; not ``raw``).

    Raises:
        SerializationError: the response holds something that is not data.
    """
    try:
        doc = {
            "v": 1,
            "message": _message(response.message),
            "additional_kwargs": _data(response.additional_kwargs),
            "logprobs": _logprobs(response.logprobs),
        }
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"chat response is not data: {exc}") from exc
    return _dumps(doc)


def encode_completion(response: CompletionResponse) -> bytes:
    """Serialize a completion response (text, extra fields, logprobs; not ``raw``).

    Raises:
        SerializationError: the response holds something that is not data.
    """
    try:
        doc = {
            "v": 1,
            "text": response.text,
            "additional_kwargs": _data(response.additional_kwargs),
            "logprobs": _logprobs(response.logprobs),
        }
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"completion response is not data: {exc}") from exc
    return _dumps(doc)


def encode_structured(output: BaseModel) -> bytes:
    """Serialize a structured-prediction result as its JSON."""
    try:
        return output.model_dump_json().encode("utf-8", "surrogatepass")
    except Exception as exc:
        raise SerializationError(f"structured output is not JSON-serializable: {exc}") from exc


# Decoding reads the payload into plain data first: any failure there is a
# `SerializationError` (the entry is corrupt; the engine deletes it). Building LlamaIndex's
# objects from that data comes after, outside it: a failure there is LlamaIndex's (its
# classes changed, say), not the entry's, and the engine keeps the entry.
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def _load(payload: bytes, codec: str, expected: str) -> dict[str, Any]:
    """The payload's JSON document, its version and ``additional_kwargs`` checked, the
    latter decoded."""
    if codec != expected:
        raise SerializationError(f"unknown codec {codec!r}")
    doc = json.loads(payload.decode("utf-8", "surrogatepass"))
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ValueError("unknown payload version")
    if not isinstance(doc.get("additional_kwargs"), dict):
        raise ValueError("additional_kwargs must be an object")
    doc["additional_kwargs"] = _undata(doc["additional_kwargs"])
    logprobs = doc.get("logprobs")
    if logprobs is not None and not (
        isinstance(logprobs, list)
        and all(isinstance(row, list) for row in logprobs)
        and all(isinstance(p, dict) for row in logprobs for p in row)
    ):
        raise ValueError("logprobs must be lists of objects")
    return doc


def _logprobs_from(value: list[list[dict[str, Any]]] | None) -> list[list[LogProb]] | None:
    if value is None:
        return None
    return [[LogProb.model_validate(p) for p in row] for row in value]


def _read_chat(payload: bytes, codec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(message fields, response document)`` as plain data."""
    try:
        doc = _load(payload, codec, CHAT_CODEC)
        data = doc.get("message")
        if not isinstance(data, dict) or not isinstance(data.get("additional_kwargs"), dict):
            raise ValueError("message must be an object")
        role, blocks = data.get("role"), data.get("blocks")
        if not isinstance(role, str):
            raise ValueError("role must be a string")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise ValueError("blocks must be a list of objects")
        message = {
            "role": role,
            "blocks": blocks,
            "additional_kwargs": _undata(data["additional_kwargs"]),
        }
        return message, doc
    except SerializationError:
        raise
    except _UNREADABLE as exc:
        raise SerializationError(f"cached chat response is unreadable: {exc}") from exc


def decode_chat(payload: bytes, codec: str) -> ChatResponse:
    """Rebuild a chat response from `encode_chat` output.

    Raises:
        SerializationError: the payload is not one we wrote (unknown codec, not JSON,
            another version, the wrong structure): the engine deletes the entry.

    Any other exception comes from LlamaIndex building ``ChatMessage`` (its blocks),
    ``LogProb`` or ``ChatResponse`` from data that reads fine: the engine keeps the
    entry and ends the lookup as an error.
    """
    message, doc = _read_chat(payload, codec)
    return ChatResponse(
        message=ChatMessage.model_validate(message),
        additional_kwargs=doc["additional_kwargs"],
        logprobs=_logprobs_from(doc.get("logprobs")),
    )


def _read_completion(payload: bytes, codec: str) -> dict[str, Any]:
    try:
        doc = _load(payload, codec, COMPLETION_CODEC)
        if not isinstance(doc.get("text"), str):
            raise ValueError("text must be a string")
        return doc
    except SerializationError:
        raise
    except _UNREADABLE as exc:
        raise SerializationError(f"cached completion response is unreadable: {exc}") from exc


def decode_completion(payload: bytes, codec: str) -> CompletionResponse:
    """Rebuild a completion response from `encode_completion` output.

    Raises:
        SerializationError: the payload is not one we wrote (see `decode_chat`): the
            engine deletes the entry.

    Any other exception comes from LlamaIndex building ``LogProb`` or
    ``CompletionResponse``: the engine keeps the entry and ends the lookup as an error.
    """
    doc = _read_completion(payload, codec)
    return CompletionResponse(
        text=doc["text"],
        additional_kwargs=doc["additional_kwargs"],
        logprobs=_logprobs_from(doc.get("logprobs")),
    )


def decode_structured(output_cls: type[M], payload: bytes, codec: str) -> M:
    """Re-validate a cached structured result into ``output_cls``.

    Raises:
        SerializationError: wrong codec, or the payload is not JSON: the engine deletes
            the entry.

    Any other exception is ``output_cls`` refusing the JSON (a ``ValidationError``:
    the class's validators changed, say; a changed schema is another cache scope): the
    engine keeps the entry and ends the lookup as an error.
    """
    if codec != STRUCTURED_CODEC:
        raise SerializationError(f"unknown codec {codec!r}")
    try:
        json.loads(payload.decode("utf-8", "surrogatepass"))
    except _UNREADABLE as exc:
        raise SerializationError(f"cached {output_cls.__name__} is not JSON: {exc}") from exc
    # Validated from the JSON text, as it was written (JSON mode, not Python mode: the
    # two differ for strict models and some field types).
    return output_cls.model_validate_json(payload)


def _tool_calls(message: ChatMessage) -> list[Any]:
    calls: list[Any] = [
        [b.tool_name, b.tool_kwargs] for b in message.blocks if isinstance(b, ToolCallBlock)
    ]
    extra = message.additional_kwargs.get("tool_calls")
    if extra and not calls:
        calls.append(_data(extra))
    return calls


def response_text(value: Any) -> str:
    """An answer as text for the shadow judge: its text, and its tool calls (name and
    arguments) when it has any."""
    if isinstance(value, ChatResponse):
        parts = [value.message.content or ""]
        parts += [json.dumps(c, sort_keys=True, default=str) for c in _tool_calls(value.message)]
        return "\n".join(p for p in parts if p)
    if isinstance(value, CompletionResponse):
        return value.text
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


def without_usage(values: Mapping[str, Any]) -> dict[str, Any]:
    """``additional_kwargs`` without token-usage keys."""
    return {k: v for k, v in values.items() if k not in USAGE_KEYS}


def pieces(text: str) -> list[str]:
    """``text`` cut at word starts into at most 64 pieces that join back to it."""
    words = [w for w in re.split(r"(?<=\s)(?=\S)", text) if w]
    if len(words) <= _MAX_REPLAY_CHUNKS:
        return words or [text]
    size = -(-len(words) // _MAX_REPLAY_CHUNKS)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def replay_chat(response: ChatResponse) -> Iterator[ChatResponse]:
    """A cached chat response as a stream: accumulated text with a delta per chunk; the
    last chunk is the whole cached response (blocks, tool calls, extra fields)."""
    cuts = pieces(response.message.content or "")
    text = ""
    for piece in cuts[:-1]:
        text += piece
        yield ChatResponse(
            message=ChatMessage(role=response.message.role, blocks=[TextBlock(text=text)]),
            delta=piece,
            raw=response.raw,
            additional_kwargs=response.additional_kwargs,
        )
    yield response.model_copy(update={"delta": cuts[-1]})


def replay_completion(response: CompletionResponse) -> Iterator[CompletionResponse]:
    """A cached completion response as a stream (accumulated text, delta per chunk)."""
    cuts = pieces(response.text)
    text = ""
    for piece in cuts[:-1]:
        text += piece
        yield CompletionResponse(
            text=text,
            delta=piece,
            raw=response.raw,
            additional_kwargs=response.additional_kwargs,
        )
    yield response.model_copy(update={"delta": cuts[-1]})


def response_usage(value: Any, model: str | None = None) -> Usage | None:
    """Token usage a chat or completion response reports, for the cost its hits save.

    Reads ``raw["usage"]`` (OpenAI and most providers: ``prompt_tokens`` /
    ``completion_tokens``; Anthropic style: ``input_tokens`` / ``output_tokens``), then
    ``additional_kwargs``. ``None`` when nothing was reported: never a guess.
    """
    raw = getattr(value, "raw", None)
    sources: list[Any] = []
    if isinstance(raw, Mapping):
        sources.append(raw.get("usage"))
        model = model or (raw.get("model") if isinstance(raw.get("model"), str) else None)
    elif raw is not None:
        sources.append(getattr(raw, "usage", None))
    sources.append(getattr(value, "additional_kwargs", None))
    for usage in sources:
        if usage is None:
            continue
        get = usage.get if isinstance(usage, Mapping) else lambda k, u=usage: getattr(u, k, None)
        inp = get("prompt_tokens") or get("input_tokens")
        out = get("completion_tokens") or get("output_tokens")
        if isinstance(inp, int) or isinstance(out, int):
            return Usage(input_tokens=int(inp or 0), output_tokens=int(out or 0), model=model)
    return None
