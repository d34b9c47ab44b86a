"""How a `SemanticCacheLLM` call becomes a `CacheRequest`.

`messages` splits a call into its parts (question, context, template); this module adds
the scope every request of the wrapper carries (adapter, endpoint kind, the wrapped
model's identity, call arguments, the conversation a condensed question came from) and
asks the engine for the request. Building never breaks a call: a fault is counted and
the call bypasses the cache (``None``); only an invalid tenant raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.llm import LLM
from llama_index.core.prompts import BasePromptTemplate
from pydantic import BaseModel

from semcache_core import CacheEngine
from semcache_core.request import CacheRequest

from .messages import (
    Parts,
    TemplateCall,
    chat_parts,
    completion_parts,
    condensed_from,
    current_template,
    jsonable,
    last_user_text,
    llm_identity,
    match_template,
    template_call,
)
from .tenancy import call_tenant

P = TypeVar("P", bound=BasePromptTemplate)

#: Bumped when the scope's layout changes, so old entries are never matched.
SCOPE_VERSION = 2


class Wrapper(Protocol):
    """What building a request reads from the wrapper (a `SemanticCacheLLM`), at the
    time of the call."""

    @property
    def engine(self) -> CacheEngine: ...

    @property
    def llm(self) -> LLM: ...

    @property
    def tenant(self) -> str | None: ...

    @property
    def question_vars(self) -> tuple[str, ...]: ...

    @property
    def conversation_vars(self) -> tuple[str, ...]: ...

    @property
    def templates(self) -> tuple[str, ...]: ...

    @property
    def share_condensed_questions(self) -> bool: ...


def unparsed_copy(prompt: P) -> P:
    """A copy of ``prompt`` for a structured program to set its output parser on
    (``LLMTextCompletionProgram`` writes it into the template it is given)."""
    return prompt.model_copy()


def predict_call(
    wrapper: Wrapper, prompt: BasePromptTemplate, args: dict[str, Any]
) -> TemplateCall:
    """The `TemplateCall` of a ``predict``-family call, its template selected for the
    wrapper itself (whose metadata the caller sees)."""
    return template_call(prompt, wrapper, args, wrapper.question_vars, wrapper.conversation_vars)


def chat_request(
    wrapper: Wrapper, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
) -> CacheRequest | None:
    """The request of a ``chat``-family call; ``None``: bypass the cache."""

    def build() -> CacheRequest | None:
        template = _rendered_call(wrapper, last_user_text(messages))
        # Tool-calling steps are their own kind: ``exact_only_kinds=("tools",)``
        # keeps an agent's steps out of the semantic layer.
        kind = "tools" if kwargs.get("tools") else "chat"
        return _request(
            wrapper, kind, chat_parts(messages, template), {"kwargs": jsonable(kwargs)}, template
        )

    return _safely(wrapper, build)


def completion_request(
    wrapper: Wrapper, prompt: str, formatted: bool, kwargs: dict[str, Any]
) -> CacheRequest | None:
    """The request of a ``complete``-family call; ``None``: bypass the cache."""

    def build() -> CacheRequest | None:
        template = _rendered_call(wrapper, prompt)
        return _request(
            wrapper,
            "completion",
            completion_parts(prompt, template),
            {"formatted": formatted, "kwargs": jsonable(kwargs)},
            template,
        )

    return _safely(wrapper, build)


def structured_request(
    wrapper: Wrapper,
    output_cls: type[BaseModel],
    prompt: BasePromptTemplate,
    llm_kwargs: dict[str, Any] | None,
    prompt_args: dict[str, Any],
) -> CacheRequest | None:
    """The request of a ``structured_predict`` call; ``None``: bypass the cache."""

    def build() -> CacheRequest | None:
        # Keyed on the caller's template as written, never on an output parser a
        # structured program added to it: the output schema is scope of its own.
        clean = unparsed_copy(prompt)
        clean.output_parser = None
        template = template_call(
            clean, wrapper.llm, prompt_args, wrapper.question_vars, wrapper.conversation_vars
        )
        parser = prompt.output_parser
        messages = clean.format_messages(llm=wrapper.llm, **prompt_args)
        return _request(
            wrapper,
            "structured",
            chat_parts(messages, template),
            {
                "output_cls": jsonable(output_cls),
                "output_schema": output_cls.model_json_schema(),
                "output_parser": None if parser is None else jsonable(type(parser)),
                "llm_kwargs": jsonable(llm_kwargs or {}),
            },
            template,
        )

    return _safely(wrapper, build)


def _request(
    wrapper: Wrapper,
    kind: str,
    parts: Parts,
    extra: dict[str, Any],
    template: TemplateCall | None,
) -> CacheRequest | None:
    scope = {
        "adapter": "llamaindex",
        "v": SCOPE_VERSION,
        "kind": kind,
        "llm": llm_identity(wrapper.llm),
        "context": parts.context,
        "template": None if template is None else template.scope,
        **extra,
    }
    if not wrapper.share_condensed_questions:
        # A question condensed from a conversation is answered for that one only.
        scope["conversation"] = condensed_from(parts.question)
    return wrapper.engine.request(
        parts.prompt,
        question=parts.question or "",
        scope=scope,
        tenant=call_tenant(wrapper.tenant),
        kind=kind,
    )


def _safely(wrapper: Wrapper, build: Callable[[], CacheRequest | None]) -> CacheRequest | None:
    """Build a request; any fault is counted and the call bypasses the cache. An
    invalid tenant is a configuration error and raises."""
    call_tenant(wrapper.tenant)
    try:
        return build()
    except Exception as exc:
        wrapper.engine.report_error("request", exc, tenant=wrapper.tenant)
        return None


def _rendered_call(wrapper: Wrapper, text: str | None) -> TemplateCall | None:
    """The templated call in progress, or the registered template ``text`` was
    rendered from."""
    current = current_template()
    if current is not None or text is None or not wrapper.templates:
        return current
    return match_template(
        text, wrapper.templates, wrapper.question_vars, wrapper.conversation_vars
    )
