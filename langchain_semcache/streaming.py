"""Streaming through the LLM cache: `CachedStreamingChatModel`.

LangChain's ``stream()`` / ``astream()`` never consult a ``BaseCache`` (langchain #9762):
a streamed call always reaches the provider and is never recorded. This wrapper is a
chat model that delegates to another one and puts streaming calls through the same cache
as ``invoke``, under the same keys: the prompt is ``dumps(messages)`` with message ids
cleared and the ``llm_string`` is the wrapped model's own (model, parameters, bound
tools, stop). So a streamed call is answered by an entry an ``invoke`` of the same
messages wrote, and the other way round.

* A hit is replayed as a stream: the text in word-aligned pieces, each tool call as one
  tool-call chunk (assembled by LangChain's chunk addition exactly as a provider's), and
  a last chunk with the usage, response metadata and ``response_metadata["semcache"]``.
* A miss streams from the wrapped model, chunk by chunk as they arrive, and stores the
  accumulated message once the stream has completed. A stream that raises, or that the
  consumer stops early, stores nothing.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from pydantic import Field

# Set while LangChain's own cache path (`_generate_with_cache`) runs for a wrapper, so a
# `_stream` it drives (invoke with streaming callbacks) does not look up and store twice.
_CACHE_HANDLED: ContextVar[int | None] = ContextVar("semcache_stream_cache_handled", default=None)
_WORDS = re.compile(r"\S+\s*|\s+")
_DELEGATED_FIELDS = ("callbacks", "tags", "metadata", "verbose", "output_version")


def _pieces(text: str, size: int) -> list[str]:
    """``text`` cut at word ends into pieces of at least ``size`` characters."""
    out: list[str] = []
    current = ""
    for token in _WORDS.findall(text):
        current += token
        if len(current) >= size:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


_TOKEN_COUNTS = ("input_tokens", "output_tokens", "total_tokens")


def _chunk_usage(usage: Any) -> Any:
    """Usage a chunk can carry. A hit's usage has LangChain's ``total_cost: 0`` added
    (``_convert_cached_generations``); for a model that reported no usage that is all
    there is, which a chunk's ``UsageMetadata`` rejects (token counts are required).
    No token counts: no usage. Some counts: the missing ones are zero."""
    if not usage or not any(k in usage for k in _TOKEN_COUNTS):
        return None
    return {**{k: 0 for k in _TOKEN_COUNTS}, **usage}


def replay_chunks(message: BaseMessage, chunk_chars: int = 24) -> list[AIMessageChunk]:
    """A finished AI message as the chunks a provider could have streamed.

    Adding the chunks up (``functools.reduce(operator.add, chunks)``) gives back the
    message's content, tool calls, usage and metadata. Invalid tool calls come back
    as LangChain's chunk addition reads their arguments, as for a provider's stream
    (arguments that parse as partial JSON become a valid call).

    Args:
        message: the answer to replay.
        chunk_chars: text pieces are cut at the first word end past this many characters.
    """
    content = message.content
    empty: str | list[str | dict[str, Any]] = "" if isinstance(content, str) else []
    chunks: list[AIMessageChunk] = []
    if isinstance(content, str):
        chunks.extend(AIMessageChunk(content=p) for p in _pieces(content, chunk_chars))
    elif content:
        chunks.append(AIMessageChunk(content=list(content)))
    index = 0
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            args = json.dumps(call["args"], ensure_ascii=False)
            part = tool_call_chunk(name=call["name"], args=args, id=call.get("id"), index=index)
            chunks.append(AIMessageChunk(content=empty, tool_call_chunks=[part]))
            index += 1
        for bad in message.invalid_tool_calls:
            part = tool_call_chunk(
                name=bad.get("name"), args=bad.get("args"), id=bad.get("id"), index=index
            )
            chunks.append(AIMessageChunk(content=empty, tool_call_chunks=[part]))
            index += 1
    usage = _chunk_usage(message.usage_metadata if isinstance(message, AIMessage) else None)
    chunks.append(
        AIMessageChunk(
            content=empty,
            additional_kwargs=dict(message.additional_kwargs),
            response_metadata=dict(message.response_metadata),
            usage_metadata=usage,
            chunk_position="last",
        )
    )
    return chunks


def _final_generation(chunks: Sequence[ChatGenerationChunk]) -> ChatGeneration | None:
    """The streamed chunks as the generation ``invoke`` would have produced."""
    merged = merge_chat_generation_chunks(list(chunks))
    if merged is None:
        return None
    message = message_chunk_to_message(merged.message)
    info = merged.generation_info
    message.response_metadata = {**(info or {}), **message.response_metadata}
    return ChatGeneration(message=message, generation_info=info)


def _with_info(result: ChatResult) -> ChatResult:
    """Generation info merged into response metadata, as ``invoke`` stores it."""
    for generation in result.generations:
        info = generation.generation_info or {}
        generation.message.response_metadata = {**info, **generation.message.response_metadata}
    return result


class CachedStreamingChatModel(BaseChatModel):
    """A chat model whose ``stream``/``astream`` are served from and recorded into the
    LLM cache, under the same keys as ``invoke``.

    It delegates every call to ``model``. The cache is resolved the way LangChain does
    for ``invoke``: ``cache=`` (any ``BaseCache``, typically a `SemanticCache`), else the
    global ``set_llm_cache`` cache; ``cache=False`` turns caching off. ``invoke`` and
    ``ainvoke`` go through LangChain's own cache code with the wrapped model's
    ``llm_string``, so entries are shared with the unwrapped model used with the same
    cache. Misses call the wrapped model's ``_generate``/``_stream`` directly (its rate
    limiter is applied, on misses only); its callbacks, tags, metadata, verbosity and
    output version are taken over unless given here.

    Args:
        model: the chat model to wrap.
        cache: the cache (see above).
        replay_chunk_chars: size of the text pieces a hit is replayed in.
        **kwargs: other ``BaseChatModel`` fields.

    Example:
        >>> cache = SemanticCache(redis_url=url, embeddings=embeddings)
        >>> model = CachedStreamingChatModel(model=ChatOpenAI(), cache=cache)
        >>> for chunk in model.stream("How do I reset my password?"):
        ...     print(chunk.text, end="")
    """

    model: BaseChatModel = Field(description="The chat model to wrap.")
    replay_chunk_chars: int = Field(
        default=24, ge=1, description="Size of the text pieces a hit is replayed in."
    )

    def __init__(self, *, model: BaseChatModel, **kwargs: Any) -> None:
        for name in _DELEGATED_FIELDS:
            kwargs.setdefault(name, getattr(model, name))
        kwargs.setdefault("disable_streaming", model.disable_streaming)
        kwargs["model"] = model
        super().__init__(**kwargs)

    # -- identity: the wrapped model's, so keys are shared -------------------------------
    @property
    def _llm_type(self) -> str:
        return f"semcache-streaming:{self.model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return dict(self.model._identifying_params)

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        return self.model._get_llm_string(stop=stop, **kwargs)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.model._get_ls_params(stop=stop, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools as the wrapped model formats them, to this wrapper.

        Raises:
            NotImplementedError: the wrapped model's ``bind_tools`` returns something
                other than a binding of itself.
        """
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.model.bind_tools(tools, **kwargs)
        if not (isinstance(bound, RunnableBinding) and bound.bound is self.model):
            raise NotImplementedError(
                f"{type(self.model).__name__}.bind_tools does not return a binding of the "
                "model; bind its tools yourself with .bind(tools=...)"
            )
        return self.bind(**bound.kwargs)

    # -- cache plumbing -----------------------------------------------------------------
    def _stream_cache(self) -> BaseCache | None:
        """The cache a streaming call uses, or ``None`` (off, or LangChain's own cache
        path is already handling this call)."""
        if self.cache is False or _CACHE_HANDLED.get() == id(self):
            return None
        cache = self.cache if isinstance(self.cache, BaseCache) else get_llm_cache()
        if cache is None and self.cache is True:
            raise ValueError("Asked to cache, but no cache found at `langchain.cache`.")
        return cache

    def _key(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[str, str]:
        """(prompt, llm_string) exactly as ``BaseChatModel._generate_with_cache`` builds
        them for these messages and call arguments."""
        normalized = [
            m.model_copy(update={"id": None}) if getattr(m, "id", None) is not None else m
            for m in messages
        ]
        return dumps(normalized), self._get_llm_string(stop=stop, **kwargs)

    def _replay(self, cached: list[Generation]) -> Iterator[ChatGenerationChunk]:
        """A hit as chunks (its cost zeroed, as ``invoke`` does for a hit)."""
        generation = self._convert_cached_generations(cached)[0]
        return self._chunks(generation.message)

    def _chunks(self, message: BaseMessage) -> Iterator[ChatGenerationChunk]:
        for chunk in replay_chunks(message, self.replay_chunk_chars):
            yield ChatGenerationChunk(message=chunk)

    def _inner_streams(self, *, async_api: bool, kwargs: dict[str, Any]) -> bool:
        cls = type(self.model)
        has_sync = cls._stream is not BaseChatModel._stream
        has_async = cls._astream is not BaseChatModel._astream
        if not (has_sync or (async_api and has_async)):
            return False
        disabled = self.model.disable_streaming
        return not (disabled is True or (disabled == "tool_calling" and kwargs.get("tools")))

    def _takes_run_manager(self, method: Callable[..., Any]) -> bool:
        return "run_manager" in inspect.signature(method).parameters

    # -- LangChain's own cache path, marked so _stream does not repeat it ---------------
    def _generate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        token = _CACHE_HANDLED.set(id(self))
        try:
            return super()._generate_with_cache(
                messages, stop=stop, run_manager=run_manager, **kwargs
            )
        finally:
            _CACHE_HANDLED.reset(token)

    async def _agenerate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        token = _CACHE_HANDLED.set(id(self))
        try:
            return await super()._agenerate_with_cache(
                messages, stop=stop, run_manager=run_manager, **kwargs
            )
        finally:
            _CACHE_HANDLED.reset(token)

    # -- sync ---------------------------------------------------------------------------
    def _call_generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        if self.model.rate_limiter is not None:
            self.model.rate_limiter.acquire(blocking=True)
        if self._takes_run_manager(self.model._generate):
            return self.model._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        return self.model._generate(messages, stop=stop, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._call_generate(messages, stop, run_manager, kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cache = self._stream_cache()
        prompt, llm_string = self._key(messages, stop, kwargs) if cache is not None else ("", "")
        if cache is not None:
            cached = cache.lookup(prompt, llm_string)
            if isinstance(cached, list) and cached:
                yield from self._replay(cached)
                return
        if not self._inner_streams(async_api=False, kwargs=kwargs):
            result = _with_info(self._call_generate(messages, stop, run_manager, kwargs))
            if cache is not None:
                cache.update(prompt, llm_string, result.generations)
            yield from self._chunks(result.generations[0].message)
            return
        if self.model.rate_limiter is not None:
            self.model.rate_limiter.acquire(blocking=True)
        chunks: list[ChatGenerationChunk] = []
        for chunk in self.model._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            chunks.append(chunk)
            yield chunk
        # Reached only when the stream completed: an error or an early stop skips it.
        generation = _final_generation(chunks)
        if cache is not None and generation is not None:
            cache.update(prompt, llm_string, [generation])

    # -- async --------------------------------------------------------------------------
    async def _call_agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> ChatResult:
        if self.model.rate_limiter is not None:
            await self.model.rate_limiter.aacquire(blocking=True)
        if self._takes_run_manager(self.model._agenerate):
            return await self.model._agenerate(
                messages, stop=stop, run_manager=run_manager, **kwargs
            )
        return await self.model._agenerate(messages, stop=stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await self._call_agenerate(messages, stop, run_manager, kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        cache = self._stream_cache()
        prompt, llm_string = self._key(messages, stop, kwargs) if cache is not None else ("", "")
        if cache is not None:
            cached = await cache.alookup(prompt, llm_string)
            if isinstance(cached, list) and cached:
                for chunk in self._replay(cached):
                    yield chunk
                return
        if not self._inner_streams(async_api=True, kwargs=kwargs):
            result = _with_info(await self._call_agenerate(messages, stop, run_manager, kwargs))
            if cache is not None:
                await cache.aupdate(prompt, llm_string, result.generations)
            for chunk in self._chunks(result.generations[0].message):
                yield chunk
            return
        if self.model.rate_limiter is not None:
            await self.model.rate_limiter.aacquire(blocking=True)
        chunks: list[ChatGenerationChunk] = []
        async for chunk in self.model._astream(
            messages, stop=stop, run_manager=run_manager, **kwargs
        ):
            chunks.append(chunk)
            yield chunk
        generation = _final_generation(chunks)
        if cache is not None and generation is not None:
            await cache.aupdate(prompt, llm_string, [generation])


__all__ = ["CachedStreamingChatModel", "replay_chunks"]
