"""Split a LangChain cache prompt into the question to embed and the context to match.

For chat models LangChain passes ``dumps(messages)``: embedding that JSON would make
every prompt look alike (same boilerplate), so the question is the text of the last
human message, and everything else (system prompt, earlier turns, tool messages, images)
is context that must match exactly. Legacy LLMs pass a plain string: that is the
question, with no further context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_HUMAN = {"human", "HumanMessage", "HumanMessageChunk"}


@dataclass(frozen=True)
class ParsedPrompt:
    """The question to embed (``None``: no semantic lookup) and the exact-match context."""

    question: str | None
    context: Any
    kind: str  # "chat" or "text"


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


def _is_human(message: dict[str, Any]) -> bool:
    kind = message["kwargs"].get("type") or (message["id"][-1] if message["id"] else None)
    return kind in _HUMAN


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
    messages = _serialized_messages(prompt)
    if messages is None:
        return ParsedPrompt(question=prompt, context=None, kind="text")
    last = messages[-1]
    if not _is_human(last):
        return ParsedPrompt(question=None, context={"messages": messages}, kind="chat")
    text, rest = _split_content(last["kwargs"].get("content"))
    last_without_text = {**last, "kwargs": {**last["kwargs"], "content": rest}}
    return ParsedPrompt(
        question=text if text.strip() else None,
        context={"messages": [*messages[:-1], last_without_text]},
        kind="chat",
    )
