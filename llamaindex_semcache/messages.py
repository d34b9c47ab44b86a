"""Split a LlamaIndex call into the parts of a cache request. Pure: no I/O.

- **question**: the text that is embedded: what the user varies. For chat calls it is
  the text of the last user message; a call that does not end with a user message (an
  agent step after a tool result) has none and is matched exactly. For a templated call
  (``llm.predict(template, query_str=...)`` as query engines do, or a text rendered from
  a registered template) it is the value of the question variable only; the template
  text and every other variable (retrieved context, chat history) are scope. A
  templated call without a question variable has no question: it is exact-only, never
  guessed. A question condensed from a conversation (the output of a template with a
  ``chat_history`` variable) carries that conversation into the scope of the calls it
  feeds in the same thread or task.
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
import string
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
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


@dataclass(frozen=True)
class TemplateCall:
    """What a templated call (``predict``, a registered template) tells the cache.

    Attributes:
        question: the question variable's value, the only text embedded; ``None``
            when the template has no question variable (the call is exact-only).
        scope: the template's identity and every other variable, matched exactly.
        conversation: a digest of the conversation variables (``chat_history``) when
            the template has any: what this call produces (a condensed question)
            stays tied to that conversation.
    """

    question: str | None
    scope: Mapping[str, Any]
    conversation: str | None = None


# The templated call in progress. Set by the wrapper around ``predict`` and friends and
# read when the LLM endpoint it calls builds its request.
_template_call: ContextVar[TemplateCall | None] = ContextVar(
    "semcache_template_call", default=None
)
# Questions condensed from a conversation in this thread or task: (text, conversation).
_condensed: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("semcache_condensed", default=())
_CONDENSED_KEPT = 16
_MAX_MATCHED_CHARS = 200_000


@contextmanager
def in_template(call: TemplateCall | None) -> Iterator[None]:
    """Make a templated call visible to the endpoint it calls."""
    token = _template_call.set(call)
    try:
        yield
    finally:
        _template_call.reset(token)


def current_template() -> TemplateCall | None:
    """The templated call in progress, if any."""
    return _template_call.get()


def remember_condensed(call: TemplateCall | None, output: Any) -> None:
    """Tie the output of a conversation template (a condensed question) to its
    conversation, for the calls it feeds in this thread or task."""
    if call is None or call.conversation is None or not isinstance(output, str):
        return
    if not output.strip():
        return
    kept = tuple(item for item in _condensed.get() if item[0] != output)
    _condensed.set(((output, call.conversation), *kept)[:_CONDENSED_KEPT])


def condensed_from(question: str | None) -> str | None:
    """The conversation ``question`` was condensed from in this thread or task."""
    if not question:
        return None
    for text, conversation in _condensed.get():
        if text == question:
            return conversation
    return None


def prompt_vars(prompt: Any, llm: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    """A templated call's variables: those fixed on the template with ``partial_format``
    (query engines fix ``query_str`` so) and the call's own arguments."""
    try:
        selected = prompt.select(llm=llm) if hasattr(prompt, "select") else prompt
        fixed = getattr(selected, "kwargs", None)
    except Exception:
        fixed = None
    return {**(fixed if isinstance(fixed, Mapping) else {}), **args}


def template_identity(prompt: Any, llm: Any) -> dict[str, Any]:
    """What makes a prompt template itself: its class, text (for the LLM it is used
    with), variable and function mappings, and output parser."""
    try:
        text: Any = prompt.get_template(llm=llm)
    except Exception:
        text = jsonable(prompt)
    mappings = getattr(prompt, "function_mappings", None) or {}
    parser = getattr(prompt, "output_parser", None)
    return {
        "class": _qualname(prompt),
        "text": text,
        "var_mappings": jsonable(getattr(prompt, "template_var_mappings", None)),
        "function_mappings": sorted(str(name) for name in mappings),
        "output_parser": None if parser is None else _qualname(parser),
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(jsonable(value))).hexdigest()


def build_template_call(
    identity: Any,
    values: Mapping[str, Any],
    question_vars: Sequence[str],
    conversation_vars: Sequence[str],
) -> TemplateCall:
    """Split a templated call's variables: the first question variable with text is
    the question, all others are scope."""
    name = next(
        (n for n in question_vars if isinstance(v := values.get(n), str) and v.strip()), None
    )
    others = {k: v for k, v in values.items() if k != name}
    history = {k: others[k] for k in conversation_vars if k in others}
    return TemplateCall(
        question=None if name is None else str(values[name]),
        scope={"template": identity, "question_var": name, "vars": jsonable(others)},
        conversation=_digest(history) if history else None,
    )


def template_call(
    prompt: Any,
    llm: Any,
    args: Mapping[str, Any],
    question_vars: Sequence[str],
    conversation_vars: Sequence[str],
) -> TemplateCall:
    """The `TemplateCall` of ``prompt`` formatted with ``args``. A template that cannot
    be described is exact-only."""
    try:
        return build_template_call(
            template_identity(prompt, llm),
            prompt_vars(prompt, llm, args),
            question_vars,
            conversation_vars,
        )
    except Exception as exc:
        return TemplateCall(question=None, scope={"$error": type(exc).__name__})


@lru_cache(maxsize=128)
def _template_pattern(template: str) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    """A regex that recovers the variables of ``template`` (``str.format`` syntax)."""
    pieces: list[str] = []
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for literal, field, spec, conversion in parsed:
        pieces.append(re.escape(literal))
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            return None
        if field in names:
            pieces.append(f"(?P={field})")
        else:
            names.append(field)
            pieces.append(f"(?P<{field}>.*)")
    return re.compile("".join(pieces), re.DOTALL), tuple(names)


def match_template(
    text: str,
    templates: Sequence[str],
    question_vars: Sequence[str],
    conversation_vars: Sequence[str],
) -> TemplateCall | None:
    """The `TemplateCall` of a text rendered from one of ``templates`` (a chat engine
    that formats its prompt itself and calls ``complete``), or ``None``."""
    if len(text) > _MAX_MATCHED_CHARS:
        return None
    for template in templates:
        compiled = _template_pattern(template)
        if compiled is None:
            continue
        found = compiled[0].fullmatch(text)
        if found is not None:
            identity = {"registered": template}
            return build_template_call(
                identity, found.groupdict(), question_vars, conversation_vars
            )
    return None


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


def split_question(text: str, template: TemplateCall | None) -> tuple[str | None, str | None]:
    """The question inside ``text`` and the text around it (``None``: nothing around).

    Without a templated call the whole text is the question. In one, its question
    variable's value (last occurrence) is, and the rest of ``text`` is returned with a
    slot where the question was; when the template has no question variable, or the
    value is not in ``text``, there is no question: the call is exact-only.
    """
    if template is None:
        return text, None
    hint = template.question
    at = -1 if hint is None else text.rfind(hint)
    if hint is None or at < 0:
        return None, text
    return hint, text[:at] + QUESTION_SLOT + text[at + len(hint) :]


def message_data(message: ChatMessage) -> dict[str, Any]:
    """A message as key data: role, blocks, extra fields."""
    return {
        "role": jsonable(message.role),
        "blocks": [jsonable(block) for block in message.blocks],
        "kwargs": jsonable(message.additional_kwargs),
    }


def _text(value: Any) -> str:
    return canonical_json(value).decode("utf-8", "surrogatepass")


def last_user_text(messages: Sequence[ChatMessage]) -> str | None:
    """The text of the last message when it is a user message with text, else ``None``."""
    if not messages or messages[-1].role != MessageRole.USER:
        return None
    texts = [b.text for b in messages[-1].blocks if isinstance(b, TextBlock)]
    return "\n".join(texts) if texts else None


def chat_parts(messages: Sequence[ChatMessage], template: TemplateCall | None = None) -> Parts:
    """Parts of a chat call.

    Args:
        messages: the messages as the LLM receives them.
        template: the templated call that rendered them, if any: only its question
            variable is the question (see `split_question`).
    """
    data = [message_data(m) for m in messages]
    prompt = _text(data)
    if not messages or messages[-1].role != MessageRole.USER:
        return Parts(prompt=prompt, question=None, context={"messages": data})
    last = messages[-1]
    texts = [b.text for b in last.blocks if isinstance(b, TextBlock)]
    if not texts:
        return Parts(prompt=prompt, question=None, context={"messages": data})
    question, around = split_question("\n".join(texts), template)
    # Text blocks keep their position, not their text; the rest must match exactly.
    blocks = [
        {"block_type": "text"} if isinstance(b, TextBlock) else jsonable(b) for b in last.blocks
    ]
    last_data = {**data[-1], "blocks": blocks, "template": around}
    return Parts(prompt=prompt, question=question, context={"messages": [*data[:-1], last_data]})


def completion_parts(prompt: str, template: TemplateCall | None = None) -> Parts:
    """Parts of a completion call: the prompt is the question, unless it was rendered
    from a template (then only the question variable is; see `split_question`)."""
    question, around = split_question(prompt, template)
    return Parts(prompt=prompt, question=question, context={"template": around})
