"""Split a LangChain cache prompt into the question to embed and the context to match.

For chat models LangChain passes ``dumps(messages)``: embedding that JSON would make
every prompt look alike (same boilerplate), so the question is the text of the last
human message, and everything else (system prompt, earlier turns, tool messages, images)
is context that must match exactly. Legacy LLMs pass a plain string: that is the
question, with no further context.

Bookkeeping never enters a key: an AI message replayed from the cache carries the hit
marker ``response_metadata["semcache"]`` and LangChain's ``usage_metadata["total_cost"]``
(added to every hit); when such a message is sent back as history (an agent loop, a
chat), both are removed before the prompt is keyed, so the next step's key is the one
the first run stored.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

_HUMAN = {"human", "HumanMessage", "HumanMessageChunk"}
_AI = {"ai", "AIMessage", "AIMessageChunk"}
# What the cache and LangChain's cache path add to a replayed AI message.
_MARKER = "semcache"
_FRAMEWORK_USAGE = ("total_cost",)
# ``json.dumps(messages, sort_keys=True, ensure_ascii=False)``, its encoder made once.
_KEY_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


class ParsedPrompt(NamedTuple):
    """The question to embed (``None``: no semantic lookup) and the exact-match context."""

    question: str | None
    context: Any
    kind: str  # "chat" or "text"
    key: str = ""  # the prompt for the exact key, bookkeeping removed


def _serialized_messages(prompt: str) -> list[dict[str, Any]] | None:
    if not prompt.startswith("["):
        return None
    try:
        value = json.loads(prompt)
    except ValueError:
        return None
    if not isinstance(value, list) or not value:
        return None
    for item in value:
        if not (
            isinstance(item, dict)
            and item.get("lc") == 1
            and isinstance(item.get("kwargs"), dict)
            and isinstance(item.get("id"), list)
        ):
            return None
    return value


def _type(message: dict[str, Any]) -> Any:
    return message["kwargs"].get("type") or (message["id"][-1] if message["id"] else None)


def _is_human(message: dict[str, Any]) -> bool:
    return _type(message) in _HUMAN


def _without_bookkeeping(message: dict[str, Any]) -> dict[str, Any]:
    """An AI message as the model produced it: no hit marker, no cost LangChain adds to
    a hit; metadata left empty by that is dropped (the original may have had none)."""
    kwargs = message["kwargs"]
    if "response_metadata" not in kwargs and "usage_metadata" not in kwargs:
        return message  # nothing to remove (a human or system message, say)
    if _type(message) not in _AI:
        return message
    kwargs = dict(kwargs)
    meta = kwargs.get("response_metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k != _MARKER}
        if meta:
            kwargs["response_metadata"] = meta
        else:
            kwargs.pop("response_metadata")
    usage = kwargs.get("usage_metadata")
    if isinstance(usage, dict):
        usage = {k: v for k, v in usage.items() if k not in _FRAMEWORK_USAGE}
        if usage:
            kwargs["usage_metadata"] = usage
        else:
            kwargs.pop("usage_metadata")
    elif "usage_metadata" in kwargs and usage is None:
        kwargs.pop("usage_metadata")
    return {**message, "kwargs": kwargs}


def _split_content(content: Any) -> tuple[str, Any]:
    """Text to embed, and whatever else the content holds (images, files)."""
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        return "", content
    texts: list[str] = []
    others: list[Any] = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
        elif (
            isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ):
            texts.append(block["text"])
        else:
            others.append(block)
    return "\n".join(texts), others or None


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Parse a prompt as LangChain hands it to ``BaseCache.lookup``.

    The semantic layer is used only when the conversation ends with a human message: a
    prompt that ends with a tool result or an AI turn is an agent step, matched exactly.
    """
    raw = _serialized_messages(prompt)
    if raw is None:
        return ParsedPrompt(question=prompt, context=None, kind="text", key=prompt)
    messages = [_without_bookkeeping(m) for m in raw]
    key = _KEY_JSON.encode(messages)
    last = messages[-1]
    if not _is_human(last):
        return ParsedPrompt(question=None, context={"messages": messages}, kind="chat", key=key)
    text, rest = _split_content(last["kwargs"].get("content"))
    last_without_text = {**last, "kwargs": {**last["kwargs"], "content": rest}}
    return ParsedPrompt(
        question=text if text.strip() else None,
        context={"messages": [*messages[:-1], last_without_text]},
        kind="chat",
        key=key,
    )
