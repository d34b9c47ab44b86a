"""Split a LlamaIndex call into the parts of a cache request. Pure: no I/O.

- **question**: the text that is embedded. For chat calls it is the text of the last
  user message; a call that does not end with a user message (an agent step after a tool
  result) has none and is matched exactly. When the call comes from a prompt template
  (``llm.predict(template, query_str=...)``, as query engines do), the template variable
  named in ``question_vars`` is the question and the rest of the rendered text (the
  retrieved context, the instructions) becomes context, so the embedding is not drowned
  in retrieved text.
- **context**: everything else in the input (system prompt, earlier turns, tool results,
  images, the template around the question), matched exactly.
- **identity**: the wrapped model's class, parameters and metadata, matched exactly.

Everything is reduced to canonical JSON-able data; object reprs lose their memory
addresses so keys are stable across processes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from pydantic import BaseModel

from semcache_core.request import canonical_json

# Stands for the question inside a rendered template (a code point no prompt uses).
QUESTION_SLOT = "\ufffcquestion\ufffc"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SECRET = re.compile(
    r"(api_?key|secret|password|passwd|credential|auth|(^|_)token$|headers)", re.IGNORECASE
)
# LLM fields that say nothing about the answer (bookkeeping and transport). Anything
# else counts: an unneeded field costs hits, a missing one would serve wrong answers.
_SKIPPED_FIELDS = frozenset(
    {
        "callback_manager",
        "rate_limiter",
        "timeout",
        "max_retries",
        "reuse_client",
        "http_client",
        "async_http_client",
    }
)

# Template variables of the current ``predict``-style call, by name. Set by the wrapper
# around a templated call and read when the LLM endpoint builds its request.
_template_vars: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "semcache_template_vars", default=None
)


@contextmanager
def template_vars(values: Mapping[str, Any]) -> Iterator[None]:
    """Make a templated call's variables visible to the endpoint it calls."""
    token = _template_vars.set(dict(values))
    try:
        yield
    finally:
        _template_vars.reset(token)


def prompt_vars(prompt: Any, llm: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    """A templated call's variables: those fixed on the template with ``partial_format``
    (query engines fix ``query_str`` so) and the call's own arguments."""
    try:
        selected = prompt.select(llm=llm) if hasattr(prompt, "select") else prompt
        fixed = getattr(selected, "kwargs", None)
    except Exception:
        fixed = None
    return {**(fixed if isinstance(fixed, Mapping) else {}), **args}


def question_hints(
    names: Sequence[str], values: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """The string values of the template variables named in ``names`` (default: those
    of the current templated call)."""
    current = _template_vars.get() if values is None else values
    if not current:
        return ()
    return tuple(v for n in names if isinstance(v := current.get(n), str) and v.strip() != "")


def jsonable(value: Any) -> Any:
    """A deterministic JSON-able form of ``value`` for keys (never decoded)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=canonical_json)
    if isinstance(value, type):
        return {"$type": f"{value.__module__}.{value.__qualname__}"}
    if isinstance(value, BaseModel):
        try:
            dumped = value.model_dump(mode="json")
        except Exception:
            dumped = {name: getattr(value, name, None) for name in type(value).model_fields}
        return {"$model": _qualname(value), "data": jsonable(dumped)}
    metadata = getattr(value, "metadata", None)
    parameters = getattr(metadata, "get_parameters_dict", None)
    if hasattr(value, "call") and callable(parameters):
        # A LlamaIndex tool: its name, description and parameters are what the LLM sees.
        return {
            "$tool": getattr(metadata, "name", None),
            "description": getattr(metadata, "description", None),
            "parameters": jsonable(parameters()),
        }
    if callable(value) and hasattr(value, "__qualname__"):
        return {"$callable": f"{getattr(value, '__module__', '')}.{value.__qualname__}"}
    return {"$repr": _ADDRESS.sub("", f"{_qualname(value)}:{value!r}")}


def _qualname(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def llm_identity(llm: Any) -> dict[str, Any]:
    """What identifies a model's answers: class, parameters and metadata.

    Every pydantic field of the LLM counts (temperature, max tokens, system prompt,
    prompt-formatting functions by name) except plumbing and anything that looks like
    a credential, so rotating an API key does not empty the cache.
    """
    params: dict[str, Any] = {}
    fields = getattr(type(llm), "model_fields", {})
    for name in sorted(fields):
        if name in _SKIPPED_FIELDS or _SECRET.search(name):
            continue
        params[name] = jsonable(getattr(llm, name, None))
    try:
        metadata: Any = jsonable(llm.metadata)
    except Exception as exc:  # a broken metadata property must not break the call
        metadata = {"$error": type(exc).__name__}
    class_name = llm.class_name() if hasattr(llm, "class_name") else type(llm).__name__
    return {
        "class": _qualname(llm),
        "class_name": class_name,
        "params": params,
        "metadata": metadata,
    }


@dataclass(frozen=True)
class Parts:
    """The full input (exact layer), the question to embed, the context to match."""

    prompt: str
    question: str | None
    context: Any


def split_question(text: str, hints: Sequence[str]) -> tuple[str, str | None]:
    """The question inside ``text`` and the text around it (``None``: all of it).

    The first hint found in ``text`` (its last occurrence) is the question; without
    one, the whole text is.
    """
    for hint in hints:
        at = text.rfind(hint)
        if at >= 0:
            return hint, text[:at] + QUESTION_SLOT + text[at + len(hint) :]
    return text, None


def message_data(message: ChatMessage) -> dict[str, Any]:
    """A message as key data: role, blocks, extra fields."""
    return {
        "role": jsonable(message.role),
        "blocks": [jsonable(block) for block in message.blocks],
        "kwargs": jsonable(message.additional_kwargs),
    }


def _text(value: Any) -> str:
    return canonical_json(value).decode("utf-8", "surrogatepass")


def chat_parts(messages: Sequence[ChatMessage], hints: Sequence[str] = ()) -> Parts:
    """Parts of a chat call.

    Args:
        messages: the messages as the LLM receives them.
        hints: candidate question texts (template variables) to look for in the last
            user message.
    """
    data = [message_data(m) for m in messages]
    prompt = _text(data)
    if not messages or messages[-1].role != MessageRole.USER:
        return Parts(prompt=prompt, question=None, context={"messages": data})
    last = messages[-1]
    texts = [b.text for b in last.blocks if isinstance(b, TextBlock)]
    if not texts:
        return Parts(prompt=prompt, question=None, context={"messages": data})
    question, template = split_question("\n".join(texts), hints)
    # Text blocks keep their position, not their text; the rest must match exactly.
    blocks = [
        {"block_type": "text"} if isinstance(b, TextBlock) else jsonable(b) for b in last.blocks
    ]
    last_data = {**data[-1], "blocks": blocks, "template": template}
    return Parts(prompt=prompt, question=question, context={"messages": [*data[:-1], last_data]})


def completion_parts(prompt: str, hints: Sequence[str] = ()) -> Parts:
    """Parts of a completion call: the prompt is the question, unless a template
    variable isolates it (then the rest of the prompt is context)."""
    question, template = split_question(prompt, hints)
    return Parts(prompt=prompt, question=question, context={"template": template})
