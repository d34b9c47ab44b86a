"""A fake chat model that streams, for the tests of `CachedStreamingChatModel`.

`FakeStreamingChatModel` answers like `FakeSupportChatModel` (same answers, usage, tool
calls) and streams the answer as a provider does: text in small pieces, each tool call's
arguments split over two chunks, usage and response metadata on the last chunk. It can
fail part-way through, to show that a broken stream is never cached.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from pydantic import PrivateAttr

from semcache_demo.langchain_fakes import FakeSupportChatModel


class StreamDropped(RuntimeError):
    """The fake provider broke the stream off (``fail_after``)."""


def provider_chunks(message: AIMessage, chunk_chars: int) -> list[AIMessageChunk]:
    """``message`` cut up the way providers stream it."""
    text = message.text
    chunks = [
        AIMessageChunk(content=text[i : i + chunk_chars]) for i in range(0, len(text), chunk_chars)
    ]
    for index, call in enumerate(message.tool_calls):
        args = json.dumps(call["args"])
        half = len(args) // 2
        chunks.append(
            AIMessageChunk(
                content="",
                tool_call_chunks=[
                    tool_call_chunk(
                        name=call["name"], args=args[:half], id=call["id"], index=index
                    )
                ],
            )
        )
        chunks.append(
            AIMessageChunk(
                content="", tool_call_chunks=[tool_call_chunk(args=args[half:], index=index)]
            )
        )
    chunks.append(
        AIMessageChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
        )
    )
    return chunks


class FakeStreamingChatModel(FakeSupportChatModel):
    """`FakeSupportChatModel` with ``_stream``/``_astream``.

    Attributes:
        chunk_chars: characters of text per streamed chunk.
        fail_after: raise `StreamDropped` after streaming this many chunks.
    """

    chunk_chars: int = 5
    fail_after: int | None = None
    _streams: int = PrivateAttr(default=0)

    @property
    def streams(self) -> int:
        """How many streamed calls reached the model."""
        return self._streams

    def _chunks(self, messages: list[BaseMessage], **kwargs: Any) -> list[ChatGenerationChunk]:
        self._streams += 1
        message = self._respond(messages, **kwargs).generations[0].message
        assert isinstance(message, AIMessage)
        return [ChatGenerationChunk(message=c) for c in provider_chunks(message, self.chunk_chars)]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.latency:
            time.sleep(self.latency)
        for n, chunk in enumerate(self._chunks(messages, **kwargs)):
            if self.fail_after is not None and n >= self.fail_after:
                raise StreamDropped(f"the provider dropped the stream after {n} chunks")
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.latency:
            await asyncio.sleep(self.latency)
        for n, chunk in enumerate(self._chunks(messages, **kwargs)):
            if self.fail_after is not None and n >= self.fail_after:
                raise StreamDropped(f"the provider dropped the stream after {n} chunks")
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
