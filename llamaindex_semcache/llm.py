"""`SemanticCacheLLM`: semcache as a LlamaIndex LLM wrapper.

LlamaIndex has no response-cache hook that can skip a call (instrumentation and callback
handlers observe, they cannot short-circuit), and ``Settings.llm`` must be an ``LLM``.
So the cache is an ``LLM`` that wraps another: every endpoint (``chat``, ``complete``,
their streaming and async twins, ``structured_predict``) first asks the engine, and on
a miss calls the wrapped LLM and stores its answer. Agents need a ``FunctionCallingLLM``:
`wrap` returns `SemanticCacheFunctionCallingLLM` for one, which delegates tool
preparation and tool-call parsing to the wrapped LLM and caches every agent step,
streamed or not.

The adapter only translates: `requests` builds the request (from the parts
`messages` splits a call into), `calls` runs the cached call, `serialization` turns
responses into bytes and back. All decisions and all Redis I/O are the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

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
from pydantic import Field, PrivateAttr, SerializeAsAny

from semcache_core import CacheEngine, LookupResult
from semcache_core.config import check_tenant_id
from semcache_core.errors import ConfigurationError

from .building import build_engine, engine_settings
from .calls import CachedCalls
from .calls import Codec as _Codec
from .messages import in_template, remember_condensed
from .requests import (
    chat_request,
    completion_request,
    predict_call,
    structured_request,
    unparsed_copy,
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
    without_usage,
)

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

dispatcher = get_dispatcher(__name__)

R = TypeVar("R")

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

    def _cached(self) -> CachedCalls:
        """The cache side of a call, with the wrapper's settings at the time of the call."""
        return CachedCalls(self._engine, self.llm, self.stale_if_error, dispatcher)

    # -- LLM endpoints ------------------------------------------------------------------
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Chat, served from the cache when possible."""
        request = chat_request(self, messages, kwargs)
        return self._cached().call(
            "chat", request, _CHAT, lambda: self.llm.chat(messages, **kwargs)
        )

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete, served from the cache when possible."""
        request = completion_request(self, prompt, formatted, kwargs)
        return self._cached().call(
            "complete",
            request,
            _COMPLETION,
            lambda: self.llm.complete(prompt, formatted=formatted, **kwargs),
        )

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream chat: a hit is replayed as a stream; a miss is recorded."""
        request = chat_request(self, messages, kwargs)  # now, in the caller's context
        return cast(
            ChatResponseGen,
            self._cached().stream(
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
        request = completion_request(self, prompt, formatted, kwargs)
        return cast(
            CompletionResponseGen,
            self._cached().stream(
                "stream_complete",
                request,
                _COMPLETION,
                lambda: self.llm.stream_complete(prompt, formatted=formatted, **kwargs),
                replay_completion,
            ),
        )

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async chat (redis.asyncio, the embedder's async method)."""
        request = chat_request(self, messages, kwargs)
        return await self._cached().acall(
            "achat", request, _CHAT, lambda: self.llm.achat(messages, **kwargs)
        )

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async complete."""
        request = completion_request(self, prompt, formatted, kwargs)
        return await self._cached().acall(
            "acomplete",
            request,
            _COMPLETION,
            lambda: self.llm.acomplete(prompt, formatted=formatted, **kwargs),
        )

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async stream chat: a hit is replayed as a stream; a miss is recorded."""
        request = chat_request(self, messages, kwargs)
        return cast(
            ChatResponseAsyncGen,
            self._cached().astream(
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
        request = completion_request(self, prompt, formatted, kwargs)
        return cast(
            CompletionResponseAsyncGen,
            self._cached().astream(
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
        call = predict_call(self, prompt, prompt_args)
        with in_template(call):
            output = super().predict(prompt, **prompt_args)
        remember_condensed(call, output)
        return output

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        """``LLM.stream``, split like `predict`."""
        with in_template(predict_call(self, prompt, prompt_args)):
            return super().stream(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """``LLM.apredict``, split like `predict`."""
        call = predict_call(self, prompt, prompt_args)
        with in_template(call):
            output = await super().apredict(prompt, **prompt_args)
        remember_condensed(call, output)
        return output

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        """``LLM.astream``, split like `predict`."""
        with in_template(predict_call(self, prompt, prompt_args)):
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
        request = structured_request(self, output_cls, prompt, llm_kwargs, prompt_args)
        return self._cached().call(
            "structured_predict",
            request,
            _structured_codec(output_cls),
            lambda: self.llm.structured_predict(
                output_cls, unparsed_copy(prompt), llm_kwargs=llm_kwargs, **prompt_args
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
        request = structured_request(self, output_cls, prompt, llm_kwargs, prompt_args)
        return await self._cached().acall(
            "astructured_predict",
            request,
            _structured_codec(output_cls),
            lambda: self.llm.astructured_predict(
                output_cls, unparsed_copy(prompt), llm_kwargs=llm_kwargs, **prompt_args
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
