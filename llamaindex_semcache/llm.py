"""`SemanticCacheLLM`: semcache as a LlamaIndex LLM wrapper.

LlamaIndex has no response-cache hook that can skip a call (instrumentation and callback
handlers observe, they cannot short-circuit), and ``Settings.llm`` must be an ``LLM``.
So the cache is an ``LLM`` that wraps another: every endpoint (``chat``, ``complete``,
their streaming and async twins, ``structured_predict``) first asks the engine, and on
a miss calls the wrapped LLM and stores its answer. Agents need a ``FunctionCallingLLM``:
`wrap` returns `SemanticCacheFunctionCallingLLM` for one, which delegates tool
preparation and tool-call parsing to the wrapped LLM and caches every agent step,
streamed or not.

The adapter only translates: `messages` builds the request, `serialization` turns
responses into bytes and back. All decisions and all Redis I/O are the engine's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.chat_engine.condense_plus_context import (
    DEFAULT_CONDENSE_PROMPT_TEMPLATE as _CONDENSE_PLUS_CONTEXT_TEMPLATE,
)
from llama_index.core.chat_engine.condense_question import (
    DEFAULT_TEMPLATE as _CONDENSE_QUESTION_TEMPLATE,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection
from llama_index.core.prompts import BasePromptTemplate, PromptTemplate
from llama_index.core.types import Model, TokenAsyncGen, TokenGen
from llama_index_instrumentation import get_dispatcher
from pydantic import BaseModel, Field, PrivateAttr, SerializeAsAny

from semcache_core import CacheEngine, LookupResult
from semcache_core.config import check_tenant_id
from semcache_core.errors import ConfigurationError
from semcache_core.request import CacheRequest

from .building import build_engine, engine_settings
from .events import SemanticCacheHitEvent, SemanticCacheMissEvent
from .messages import (
    Parts,
    TemplateCall,
    chat_parts,
    completion_parts,
    condensed_from,
    current_template,
    in_template,
    jsonable,
    last_user_text,
    llm_identity,
    match_template,
    remember_condensed,
    template_call,
)
from .serialization import (
    CHAT_CODEC,
    COMPLETION_CODEC,
    STRUCTURED_CODEC,
    decode_chat,
    decode_completion,
    decode_structured,
    encode_chat,
    encode_completion,
    encode_structured,
    replay_chat,
    replay_completion,
    response_text,
    response_usage,
    without_usage,
)
from .tenancy import call_tenant

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

dispatcher = get_dispatcher(__name__)

R = TypeVar("R")
P = TypeVar("P", bound=BasePromptTemplate)
_SCOPE_VERSION = 2

#: Template variables that hold the user's question in LlamaIndex's own prompts: query
#: engines and synthesizers (``query_str``), the condense chat engines (``question``),
#: query transforms and routers (``query``).
DEFAULT_QUESTION_VARS: tuple[str, ...] = ("query_str", "question", "query")
#: Template variables that hold a conversation: scope, and what a template with one
#: produces (a condensed question) stays tied to that conversation.
DEFAULT_CONVERSATION_VARS: tuple[str, ...] = ("chat_history",)
#: Templates that chat engines render themselves and send to ``complete``/``chat``
#: (so no ``predict`` tells the wrapper the variables): the condense prompts.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    _CONDENSE_PLUS_CONTEXT_TEMPLATE,
    _CONDENSE_QUESTION_TEMPLATE,
)

#: ``LLM`` fields a wrapper accepts and passes on (``callback_manager``, ...).
_LLM_FIELDS: frozenset[str] = frozenset(LLM.model_fields)
#: The wrapper's own options.
_WRAPPER_OPTIONS: frozenset[str] = frozenset(
    {
        "tenant",
        "stale_if_error",
        "question_vars",
        "conversation_vars",
        "templates",
        "share_condensed_questions",
    }
)


def _unparsed_copy(prompt: P) -> P:
    """A copy of ``prompt`` for a structured program to set its output parser on
    (``LLMTextCompletionProgram`` writes it into the template it is given)."""
    return prompt.model_copy()


@dataclass(frozen=True)
class _Codec(Generic[R]):
    """How one kind of answer is stored, read back, and marked when served."""

    name: str
    encode: Callable[[R], bytes]
    decode: Callable[[bytes, str], R]
    serve: Callable[[R, LookupResult], R]


def marker(result: LookupResult) -> dict[str, Any]:
    """What a served answer says about where it came from."""
    return {
        "hit": True,
        "layer": result.layer,
        "outcome": result.outcome.value,
        "similarity": None if result.similarity is None else round(result.similarity, 6),
        "cached_at": result.created_at,
        "stale": result.stale,
    }


def _serve_chat(response: ChatResponse, result: LookupResult) -> ChatResponse:
    mark = marker(result)
    return response.model_copy(
        update={
            "raw": {"semcache": mark},
            "additional_kwargs": {**without_usage(response.additional_kwargs), "semcache": mark},
        }
    )


def _serve_completion(response: CompletionResponse, result: LookupResult) -> CompletionResponse:
    mark = marker(result)
    return response.model_copy(
        update={
            "raw": {"semcache": mark},
            "additional_kwargs": {**without_usage(response.additional_kwargs), "semcache": mark},
        }
    )


def _as_is(value: R, result: LookupResult) -> R:
    return value


_CHAT: _Codec[ChatResponse] = _Codec(CHAT_CODEC, encode_chat, decode_chat, _serve_chat)
_COMPLETION: _Codec[CompletionResponse] = _Codec(
    COMPLETION_CODEC, encode_completion, decode_completion, _serve_completion
)


def _structured_codec(output_cls: type[Model]) -> _Codec[Model]:
    def decode(payload: bytes, codec: str) -> Model:
        return decode_structured(output_cls, payload, codec)

    return _Codec(STRUCTURED_CODEC, encode_structured, decode, _as_is)


def _final(response: R) -> R:
    """The last chunk of a stream as the answer to store (no delta)."""
    return cast(R, cast(BaseModel, response).model_copy(update={"delta": None}))


class SemanticCacheLLM(LLM):
    """Any LlamaIndex LLM with an exact and semantic cache in front, tenant-isolated.

    Two calls share an answer only if they have the same tenant, the same wrapped model
    (class, parameters such as temperature, metadata), the same endpoint kind and call
    arguments (tools, tool choice, response format), the same input except the question
    (system prompt, earlier turns, template text around the question), and either the
    same full input (exact hit) or a question at least ``threshold`` similar (semantic
    hit) that the engine's verifier accepts. The question is the last user message's
    text, or, for templated calls (``predict``, ``stream``, ``structured_predict`` and
    their async twins, a text rendered from one of ``templates``), the first template
    variable named in ``question_vars``; the template and the other variables are
    scope, and a templated call without a question variable is exact-only. A question
    condensed from a conversation is answered only within that conversation.

    Served hits carry no token usage and are marked in ``raw`` and ``additional_kwargs``
    as ``{"semcache": {"hit": True, "layer": ..., "similarity": ..., "stale": ...}}``.
    The wrapper emits no LLM callback events of its own: a miss is reported by the
    wrapped LLM as usual (so ``TokenCountingHandler`` counts it) and a hit by a
    `SemanticCacheHitEvent` only. Cache faults never break a call: it goes to the LLM.

    Args:
        llm: the LLM that answers misses.
        engine: the `CacheEngine` (shareable with other adapters).
        tenant: serve and store for this tenant only; default: the `tenant` context,
            else the engine's default tenant.
        stale_if_error: when the LLM raises, serve a matching entry (within the
            engine's ``stale_grace`` past its TTL) instead, marked ``"stale": True``;
            without one the LLM's exception is raised unchanged.
        question_vars: template variables that hold the question in templated calls.
        conversation_vars: template variables that hold a conversation (``chat_history``).
        templates: templates that callers render themselves before ``complete``/``chat``
            (default: LlamaIndex's condense prompts); such a text is split like a
            templated call.
        share_condensed_questions: let a question condensed from one conversation be
            answered from another conversation's entries (default: never).
        **kwargs: other ``LLM`` fields.

    Example:
        >>> from llama_index.core import Settings
        >>> Settings.llm = wrap(OpenAI(model="gpt-4o-mini"), engine)
        >>> with tenant("acme"):
        ...     index.as_query_engine().query("How do I reset my password?")
    """

    llm: SerializeAsAny[LLM] = Field(description="The LLM that answers cache misses.")
    tenant: str | None = Field(default=None, description="Fixed tenant (default: context).")
    stale_if_error: bool = Field(
        default=True, description="Serve a matching (possibly expired) entry if the LLM fails."
    )
    question_vars: tuple[str, ...] = Field(
        default=DEFAULT_QUESTION_VARS,
        description="Prompt-template variables that hold the question (the first present "
        "is embedded; without one a templated call is exact-only).",
    )
    conversation_vars: tuple[str, ...] = Field(
        default=DEFAULT_CONVERSATION_VARS,
        description="Prompt-template variables that hold a conversation.",
    )
    templates: tuple[str, ...] = Field(
        default=DEFAULT_TEMPLATES,
        description="Templates that callers render themselves before calling complete or "
        "chat (the condense prompts); a text rendered from one is split into variables.",
    )
    share_condensed_questions: bool = Field(
        default=False,
        description="Let a question condensed from one conversation be answered from "
        "another conversation's entries (off: conversations never share answers).",
    )
    _engine: CacheEngine = PrivateAttr()

    def __init__(
        self,
        llm: LLM,
        engine: CacheEngine,
        *,
        tenant: str | None = None,
        stale_if_error: bool = True,
        question_vars: Sequence[str] = DEFAULT_QUESTION_VARS,
        conversation_vars: Sequence[str] = DEFAULT_CONVERSATION_VARS,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        share_condensed_questions: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(llm, SemanticCacheLLM):
            raise ConfigurationError("this LLM is already wrapped; wrap the inner LLM once")
        if not isinstance(llm, LLM):
            raise ConfigurationError(f"llm must be a LlamaIndex LLM, got {type(llm).__name__}")
        if not isinstance(engine, CacheEngine):
            raise ConfigurationError(f"engine must be a CacheEngine, got {type(engine).__name__}")
        if tenant is not None:
            check_tenant_id(tenant)
        unknown = sorted(set(kwargs) - _LLM_FIELDS)
        if unknown:
            engine_only = [name for name in unknown if name in engine_settings()]
            if engine_only:
                raise ConfigurationError(
                    f"{engine_only} are engine settings, and this wrapper uses the engine "
                    "it is given: set them on that CacheEngine, or build through "
                    "wrap(llm, redis_url=..., embed_model=..., "
                    f"{', '.join(f'{n}=...' for n in engine_only)})"
                )
            raise ConfigurationError(
                f"{type(self).__name__} got unknown argument(s) {unknown}; it takes "
                f"{', '.join(sorted(_WRAPPER_OPTIONS | _LLM_FIELDS))}"
            )
        # The wrapper formats templated calls itself (LLM.predict), so it must format
        # them as the wrapped LLM would.
        inherited = {
            "system_prompt": llm.system_prompt,
            "messages_to_prompt": llm.messages_to_prompt,
            "completion_to_prompt": llm.completion_to_prompt,
            "output_parser": llm.output_parser,
            "pydantic_program_mode": llm.pydantic_program_mode,
            "query_wrapper_prompt": llm.query_wrapper_prompt,
            "callback_manager": llm.callback_manager,
        }
        fields: dict[str, Any] = {
            **inherited,
            **kwargs,
            "llm": llm,
            "tenant": tenant,
            "stale_if_error": stale_if_error,
            "question_vars": tuple(question_vars),
            "conversation_vars": tuple(conversation_vars),
            "templates": tuple(templates),
            "share_condensed_questions": share_condensed_questions,
        }
        super().__init__(**fields)
        self._engine = engine

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "callback_manager":
            # Settings and query engines assign the callback manager to the LLM they
            # hold; the wrapped LLM, which reports misses, must get it too.
            self.llm.callback_manager = value

    @classmethod
    def class_name(cls) -> str:
        return "SemanticCacheLLM"

    @property
    def engine(self) -> CacheEngine:
        """The cache engine."""
        return self._engine

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata (function calling only through the twin class)."""
        meta = self.llm.metadata
        if meta.is_function_calling_model and not isinstance(self, FunctionCallingLLM):
            return meta.model_copy(update={"is_function_calling_model": False})
        return meta

    # -- requests -----------------------------------------------------------------------
    def _request(
        self,
        kind: str,
        parts: Parts,
        extra: dict[str, Any],
        template: TemplateCall | None,
    ) -> CacheRequest | None:
        scope = {
            "adapter": "llamaindex",
            "v": _SCOPE_VERSION,
            "kind": kind,
            "llm": llm_identity(self.llm),
            "context": parts.context,
            "template": None if template is None else template.scope,
            **extra,
        }
        if not self.share_condensed_questions:
            # A question condensed from a conversation is answered for that one only.
            scope["conversation"] = condensed_from(parts.question)
        return self._engine.request(
            parts.prompt,
            question=parts.question or "",
            scope=scope,
            tenant=call_tenant(self.tenant),
            kind=kind,
        )

    def _safely(self, build: Callable[[], CacheRequest | None]) -> CacheRequest | None:
        """Build a request; any fault is counted and the call bypasses the cache. An
        invalid tenant is a configuration error and raises."""
        call_tenant(self.tenant)
        try:
            return build()
        except Exception as exc:
            self._engine.report_error("request", exc, tenant=self.tenant)
            return None

    def _template_call(self, prompt: BasePromptTemplate, args: dict[str, Any]) -> TemplateCall:
        return template_call(prompt, self, args, self.question_vars, self.conversation_vars)

    def _rendered_call(self, text: str | None) -> TemplateCall | None:
        """The templated call in progress, or the registered template ``text`` was
        rendered from."""
        current = current_template()
        if current is not None or text is None or not self.templates:
            return current
        return match_template(text, self.templates, self.question_vars, self.conversation_vars)

    def _chat_request(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> CacheRequest | None:
        def build() -> CacheRequest | None:
            template = self._rendered_call(last_user_text(messages))
            # Tool-calling steps are their own kind: ``exact_only_kinds=("tools",)``
            # keeps an agent's steps out of the semantic layer.
            kind = "tools" if kwargs.get("tools") else "chat"
            return self._request(
                kind, chat_parts(messages, template), {"kwargs": jsonable(kwargs)}, template
            )

        return self._safely(build)

    def _completion_request(
        self, prompt: str, formatted: bool, kwargs: dict[str, Any]
    ) -> CacheRequest | None:
        def build() -> CacheRequest | None:
            template = self._rendered_call(prompt)
            return self._request(
                "completion",
                completion_parts(prompt, template),
                {"formatted": formatted, "kwargs": jsonable(kwargs)},
                template,
            )

        return self._safely(build)

    def _structured_request(
        self,
        output_cls: type[BaseModel],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None,
        prompt_args: dict[str, Any],
    ) -> CacheRequest | None:
        def build() -> CacheRequest | None:
            # Keyed on the caller's template as written, never on an output parser a
            # structured program added to it: the output schema is scope of its own.
            clean = _unparsed_copy(prompt)
            clean.output_parser = None
            template = template_call(
                clean, self.llm, prompt_args, self.question_vars, self.conversation_vars
            )
            parser = prompt.output_parser
            messages = clean.format_messages(llm=self.llm, **prompt_args)
            return self._request(
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

        return self._safely(build)

    # -- engine calls, sync and async ---------------------------------------------------
    def _emit(self, endpoint: str, request: CacheRequest, result: LookupResult) -> None:
        try:
            if result.hit:
                dispatcher.event(
                    SemanticCacheHitEvent(
                        endpoint=endpoint,
                        tenant=request.tenant,
                        outcome=result.outcome.value,
                        similarity=result.similarity,
                        stale=result.stale,
                        seconds=result.seconds,
                        layer=result.layer,
                        cached_question=result.question,
                        cached_at=result.created_at,
                    )
                )
            else:
                dispatcher.event(
                    SemanticCacheMissEvent(
                        endpoint=endpoint,
                        tenant=request.tenant,
                        outcome=result.outcome.value,
                        similarity=result.similarity,
                        stale=result.stale,
                        seconds=result.seconds,
                    )
                )
        except Exception as exc:  # a failing event handler must not fail the call
            self._engine.report_error("event", exc, tenant=request.tenant)

    def _served(
        self,
        endpoint: str,
        request: CacheRequest,
        codec: _Codec[R],
        result: LookupResult,
    ) -> R | None:
        self._emit(endpoint, request, result)
        if not result.hit:
            return None
        try:
            return codec.serve(result.value, result)
        except Exception as exc:
            self._engine.report_error("serve", exc, tenant=request.tenant)
            return None

    def _lookup(
        self, endpoint: str, request: CacheRequest | None, codec: _Codec[R], stale: bool = False
    ) -> R | None:
        if request is None or (stale and not self.stale_if_error):
            return None
        result = self._engine.lookup(
            request, decode=codec.decode, text_of=response_text, stale=stale
        )
        return self._served(endpoint, request, codec, result)

    async def _alookup(
        self, endpoint: str, request: CacheRequest | None, codec: _Codec[R], stale: bool = False
    ) -> R | None:
        if request is None or (stale and not self.stale_if_error):
            return None
        result = await self._engine.alookup(
            request, decode=codec.decode, text_of=response_text, stale=stale
        )
        return self._served(endpoint, request, codec, result)

    def _payload(self, request: CacheRequest, codec: _Codec[R], value: R) -> bytes | None:
        try:
            return codec.encode(value)
        except Exception as exc:
            self._engine.report_error("serialize", exc, tenant=request.tenant)
            return None

    def _save(self, request: CacheRequest | None, codec: _Codec[R], value: R) -> None:
        if request is None:
            return
        payload = self._payload(request, codec, value)
        if payload is not None:
            self._engine.store(
                request,
                payload,
                codec=codec.name,
                text=response_text(value),
                usage=response_usage(value, self._model_name()),
            )

    async def _asave(self, request: CacheRequest | None, codec: _Codec[R], value: R) -> None:
        if request is None:
            return
        payload = self._payload(request, codec, value)
        if payload is not None:
            await self._engine.astore(
                request,
                payload,
                codec=codec.name,
                text=response_text(value),
                usage=response_usage(value, self._model_name()),
            )

    def _model_name(self) -> str | None:
        try:
            name = self.llm.metadata.model_name
        except Exception:
            return None
        return name if isinstance(name, str) and name else None

    # -- the four shapes of a call ------------------------------------------------------
    def _call(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: _Codec[R],
        call: Callable[[], R],
    ) -> R:
        hit = self._lookup(endpoint, request, codec)
        if hit is not None:
            return hit
        try:
            value = call()
        except Exception:
            stale = self._lookup(endpoint, request, codec, stale=True)
            if stale is None:
                raise  # the provider's own exception object, unchanged
            return stale
        self._save(request, codec, value)
        return value

    async def _acall(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: _Codec[R],
        call: Callable[[], Awaitable[R]],
    ) -> R:
        hit = await self._alookup(endpoint, request, codec)
        if hit is not None:
            return hit
        try:
            value = await call()
        except Exception:
            stale = await self._alookup(endpoint, request, codec, stale=True)
            if stale is None:
                raise
            return stale
        await self._asave(request, codec, value)
        return value

    def _stream(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: _Codec[R],
        start: Callable[[], Iterator[R]],
        replay: Callable[[R], Iterator[R]],
    ) -> Iterator[R]:
        """Replay a hit as a stream; on a miss pass the LLM's stream through and store
        its final response once the stream has completed."""
        hit = self._lookup(endpoint, request, codec)
        if hit is not None:
            yield from replay(hit)
            return
        last: R | None = None
        try:
            for chunk in start():
                last = chunk
                yield chunk
        except Exception:
            # Stale-if-error only before the first chunk: a stream cannot switch sources.
            stale: R | None = None
            if last is None:
                stale = self._lookup(endpoint, request, codec, True)
            if stale is None:
                raise
            yield from replay(stale)
            return
        if last is not None:
            self._save(request, codec, _final(last))

    async def _astream(
        self,
        endpoint: str,
        request: CacheRequest | None,
        codec: _Codec[R],
        start: Callable[[], Awaitable[AsyncIterator[R]]],
        replay: Callable[[R], Iterator[R]],
    ) -> AsyncIterator[R]:
        """The async twin of `_stream`."""
        hit = await self._alookup(endpoint, request, codec)
        if hit is not None:
            for chunk in replay(hit):
                yield chunk
            return
        last: R | None = None
        try:
            async for chunk in await start():
                last = chunk
                yield chunk
        except Exception:
            stale: R | None = None
            if last is None:
                stale = await self._alookup(endpoint, request, codec, True)
            if stale is None:
                raise
            for chunk in replay(stale):
                yield chunk
            return
        if last is not None:
            await self._asave(request, codec, _final(last))

    # -- LLM endpoints ------------------------------------------------------------------
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Chat, served from the cache when possible."""
        request = self._chat_request(messages, kwargs)
        return self._call("chat", request, _CHAT, lambda: self.llm.chat(messages, **kwargs))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete, served from the cache when possible."""
        request = self._completion_request(prompt, formatted, kwargs)
        return self._call(
            "complete",
            request,
            _COMPLETION,
            lambda: self.llm.complete(prompt, formatted=formatted, **kwargs),
        )

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream chat: a hit is replayed as a stream; a miss is recorded."""
        request = self._chat_request(messages, kwargs)  # now, in the caller's context
        return cast(
            ChatResponseGen,
            self._stream(
                "stream_chat",
                request,
                _CHAT,
                lambda: self.llm.stream_chat(messages, **kwargs),
                replay_chat,
            ),
        )

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream complete: a hit is replayed as a stream; a miss is recorded."""
        request = self._completion_request(prompt, formatted, kwargs)
        return cast(
            CompletionResponseGen,
            self._stream(
                "stream_complete",
                request,
                _COMPLETION,
                lambda: self.llm.stream_complete(prompt, formatted=formatted, **kwargs),
                replay_completion,
            ),
        )

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async chat (redis.asyncio, the embedder's async method)."""
        request = self._chat_request(messages, kwargs)
        return await self._acall(
            "achat", request, _CHAT, lambda: self.llm.achat(messages, **kwargs)
        )

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async complete."""
        request = self._completion_request(prompt, formatted, kwargs)
        return await self._acall(
            "acomplete",
            request,
            _COMPLETION,
            lambda: self.llm.acomplete(prompt, formatted=formatted, **kwargs),
        )

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async stream chat: a hit is replayed as a stream; a miss is recorded."""
        request = self._chat_request(messages, kwargs)
        return cast(
            ChatResponseAsyncGen,
            self._astream(
                "astream_chat",
                request,
                _CHAT,
                lambda: self.llm.astream_chat(messages, **kwargs),
                replay_chat,
            ),
        )

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async stream complete: a hit is replayed as a stream; a miss is recorded."""
        request = self._completion_request(prompt, formatted, kwargs)
        return cast(
            CompletionResponseAsyncGen,
            self._astream(
                "astream_complete",
                request,
                _COMPLETION,
                lambda: self.llm.astream_complete(prompt, formatted=formatted, **kwargs),
                replay_completion,
            ),
        )

    # -- templated calls: only the question variable is embedded ------------------------
    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """``LLM.predict``: the question variable (``question_vars``) is embedded, the
        template and every other variable are scope; without a question variable the
        call is exact-only."""
        call = self._template_call(prompt, prompt_args)
        with in_template(call):
            output = super().predict(prompt, **prompt_args)
        remember_condensed(call, output)
        return output

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        """``LLM.stream``, split like `predict`."""
        with in_template(self._template_call(prompt, prompt_args)):
            return super().stream(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """``LLM.apredict``, split like `predict`."""
        call = self._template_call(prompt, prompt_args)
        with in_template(call):
            output = await super().apredict(prompt, **prompt_args)
        remember_condensed(call, output)
        return output

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        """``LLM.astream``, split like `predict`."""
        with in_template(self._template_call(prompt, prompt_args)):
            return await super().astream(prompt, **prompt_args)

    # -- structured output ----------------------------------------------------------------
    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """``LLM.structured_predict``, cached as the output's JSON (kind
        ``"structured"``).

        Keyed on the template as written plus the output class's JSON schema, split
        like `predict`; the caller's template is never modified. A hit is the user's
        own class, re-validated (an entry that no longer validates is deleted and
        missed): ``semcache_core.last_lookup()`` tells whether it was served.
        """
        request = self._structured_request(output_cls, prompt, llm_kwargs, prompt_args)
        return self._call(
            "structured_predict",
            request,
            _structured_codec(output_cls),
            lambda: self.llm.structured_predict(
                output_cls, _unparsed_copy(prompt), llm_kwargs=llm_kwargs, **prompt_args
            ),
        )

    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """The async twin of `structured_predict`."""
        request = self._structured_request(output_cls, prompt, llm_kwargs, prompt_args)
        return await self._acall(
            "astructured_predict",
            request,
            _structured_codec(output_cls),
            lambda: self.llm.astructured_predict(
                output_cls, _unparsed_copy(prompt), llm_kwargs=llm_kwargs, **prompt_args
            ),
        )


class SemanticCacheFunctionCallingLLM(SemanticCacheLLM, FunctionCallingLLM):
    """`SemanticCacheLLM` for a ``FunctionCallingLLM``: usable by ``FunctionAgent``.

    ``chat_with_tools`` and its streaming and async twins run ``FunctionCallingLLM``'s
    own logic over this wrapper's cached endpoints: the wrapped LLM prepares the tools
    (its provider format becomes part of the key), validates responses and parses tool
    calls, so a cached tool call parses exactly as a fresh one.
    """

    def __init__(self, llm: LLM, engine: CacheEngine, **kwargs: Any) -> None:
        if not isinstance(llm, FunctionCallingLLM):
            raise ConfigurationError(
                f"{type(llm).__name__} is not a FunctionCallingLLM; use SemanticCacheLLM"
            )
        super().__init__(llm, engine, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SemanticCacheFunctionCallingLLM"

    def _tool_llm(self) -> FunctionCallingLLM:
        return cast(FunctionCallingLLM, self.llm)

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The wrapped LLM's tool preparation (``tool_required`` passed when it takes it)."""
        return self._tool_llm()._prepare_chat_with_tools_compat(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """The wrapped LLM's validation."""
        return self._tool_llm()._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs
        )

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """The wrapped LLM's tool-call parsing."""
        return self._tool_llm().get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )


def wrap(llm: LLM, engine: CacheEngine | None = None, **options: Any) -> SemanticCacheLLM:
    """Put the cache in front of ``llm``, keeping its abilities.

    Either share an engine (``engine=``, e.g. the one a LangChain ``SemanticCache`` uses)
    or let ``wrap`` build one from engine settings; never both.

    Args:
        llm: any LlamaIndex LLM; a ``FunctionCallingLLM`` gets the function-calling twin.
        engine: a shared `CacheEngine`. Then no engine setting may be given: a threshold
            or namespace passed here could not apply to it, so it raises.
        **options: wrapper options: ``tenant``, ``stale_if_error``, ``question_vars``,
            ``conversation_vars``, ``templates``, ``share_condensed_questions``, and
            ``LLM`` fields (``callback_manager``...). Without ``engine``, also engine
            settings: ``redis_url`` (default: env ``SEMCACHE_REDIS_URL``),
            ``embed_model`` (a LlamaIndex ``BaseEmbedding``, ``semcache_core.minilm()``,
            any embedder `CacheEngine` takes; without one only exact hits),
            ``threshold``, ``namespace``, ``ttl``, any other `CacheConfig` field,
            ``judge``, ``verifier``, ``metrics``, ``prices``.

    Returns:
        A `SemanticCacheFunctionCallingLLM` if ``llm`` is a ``FunctionCallingLLM``, else
        a `SemanticCacheLLM`. ``.engine`` is its engine (close it when you built it).

    Raises:
        ConfigurationError: an unknown keyword, engine settings together with
            ``engine=``, or an invalid value.

    Example:
        >>> Settings.llm = wrap(OpenAI(model="gpt-4o-mini"), redis_url=url,
        ...                     embed_model=minilm(), threshold=0.85)
        >>> Settings.llm = wrap(OpenAI(model="gpt-4o-mini"), engine=shared_engine)
    """
    settings = {k: v for k, v in options.items() if k not in _WRAPPER_OPTIONS | _LLM_FIELDS}
    rest = {k: v for k, v in options.items() if k not in settings}
    built = build_engine(engine, settings, "wrap()", allowed=_WRAPPER_OPTIONS | _LLM_FIELDS)
    try:
        if isinstance(llm, FunctionCallingLLM):
            return SemanticCacheFunctionCallingLLM(llm, built, **rest)
        return SemanticCacheLLM(llm, built, **rest)
    except Exception:
        if built is not engine:
            built.close()
        raise
