"""Deterministic fake LlamaIndex LLMs for the notebooks, the README and tests.

`FakeLLM` answers the questions of `semcache_demo.workload` with their intent's answer
and any other input with a fixed text derived from it. It implements all eight
endpoints (streams yield word chunks with a delta), reports token usage like a real
provider (in ``raw["usage"]`` and ``additional_kwargs``), fires LlamaIndex's LLM
callback and instrumentation events, can sleep to simulate latency, can be told to fail,
and counts the calls that reached it.

`FakeFunctionCallingLLM` adds tool calling in the OpenAI format: given tools, it calls
the first one (or the one named by ``tool_choice``) with arguments filled from the
tool's JSON schema, and once the conversation holds a tool result it answers in text
from that result. Tool calls are returned as ``ToolCallBlock`` blocks and as OpenAI
dicts in ``additional_kwargs["tool_calls"]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection
from pydantic import PrivateAttr

from .workload import answer_for

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool


def tokens(text: str) -> int:
    """A rough token count (about 4 characters a token), enough for cost arithmetic."""
    return max(1, (len(text) + 3) // 4)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"(?<=\s)(?=\S)", text) if w] or [text]


def _fill(schema: dict[str, Any], text: str) -> Any:
    """A value that satisfies a (simple) JSON schema, built from ``text``."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _fill(sub, text) for name, sub in props.items()}
    if kind == "array":
        return [_fill(schema.get("items", {"type": "string"}), text)]
    if kind == "integer":
        return len(text) % 100
    if kind == "number":
        return round((len(text) % 100) / 10, 1)
    if kind == "boolean":
        return True
    return text


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            return message.content or ""
    return messages[-1].content or "" if messages else ""


class FakeLLM(LLM):
    """A support bot that always gives the same answer to the same input.

    Attributes:
        model: part of the model identity, so two names never share entries.
        temperature: likewise.
        latency: seconds each call sleeps (``time.sleep`` / ``asyncio.sleep``).
        chat_model: what ``metadata.is_chat_model`` says (query engines then use chat).
    """

    model: str = "fake-llm-1"
    temperature: float = 0.0
    latency: float = 0.0
    chat_model: bool = True
    _calls: int = PrivateAttr(default=0)
    _error: BaseException | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "FakeLLM"

    @property
    def calls(self) -> int:
        """How many calls reached the model (cache misses)."""
        return self._calls

    def fail_with(self, error: BaseException | None) -> None:
        """Make every call raise ``error`` (``None``: answer again)."""
        self._error = error

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            model_name=self.model,
            is_chat_model=self.chat_model,
            context_window=8192,
            num_output=512,
        )

    def answer(self, question: str) -> str:
        """The model's answer to ``question`` (deterministic)."""
        known = answer_for(question)
        if known is not None:
            return known
        tag = f"{self.model} t={self.temperature:g}"
        digest = hashlib.sha256(f"{tag}|{question}".encode()).hexdigest()[:8]
        topic = question.strip().splitlines()[-1][:80] if question.strip() else ""
        return f"[{tag}] Answer {digest} to: {topic}"

    def _begin(self) -> None:
        self._calls += 1
        if self._error is not None:
            raise self._error
        if self.latency:
            time.sleep(self.latency)

    async def _abegin(self) -> None:
        self._calls += 1
        if self._error is not None:
            raise self._error
        if self.latency:
            await asyncio.sleep(self.latency)

    def _usage(self, prompt: str, output: str) -> dict[str, int]:
        p, c = tokens(prompt), tokens(output)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _raw(self, usage: dict[str, int]) -> dict[str, Any]:
        return {"id": f"fake-{self._calls}", "model": self.model, "usage": usage}

    def _respond(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        message = ChatMessage(
            role=MessageRole.ASSISTANT, content=self.answer(_last_user_text(messages))
        )
        return self._chat_response(messages, message)

    def _chat_response(
        self, messages: Sequence[ChatMessage], message: ChatMessage, delta: str | None = None
    ) -> ChatResponse:
        prompt = "\n".join(str(m) for m in messages)
        usage = self._usage(prompt, message.content or json.dumps(message.additional_kwargs))
        return ChatResponse(
            message=message, raw=self._raw(usage), additional_kwargs=dict(usage), delta=delta
        )

    def _chunks(self, response: ChatResponse) -> list[ChatResponse]:
        """A response as the stream a provider would send: word chunks, usage at the end."""
        text = response.message.content or ""
        out: list[ChatResponse] = []
        acc = ""
        words = _words(text)
        for word in words[:-1]:
            acc += word
            out.append(
                ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=acc), delta=word
                )
            )
        out.append(response.model_copy(update={"delta": words[-1]}))
        return out

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self._begin()
        return self._respond(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await self._abegin()
        return self._respond(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            self._begin()
            yield from self._chunks(self._respond(messages, **kwargs))

        return gen()

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            await self._abegin()
            for chunk in self._chunks(self._respond(messages, **kwargs)):
                yield chunk

        return gen()

    def _complete(self, prompt: str, formatted: bool) -> CompletionResponse:
        if not formatted and self.completion_to_prompt is not None:
            prompt = self.completion_to_prompt(prompt)
        text = self.answer(prompt)
        usage = self._usage(prompt, text)
        return CompletionResponse(text=text, raw=self._raw(usage), additional_kwargs=dict(usage))

    def _completion_chunks(self, response: CompletionResponse) -> list[CompletionResponse]:
        out: list[CompletionResponse] = []
        acc = ""
        words = _words(response.text)
        for word in words[:-1]:
            acc += word
            out.append(CompletionResponse(text=acc, delta=word))
        out.append(response.model_copy(update={"delta": words[-1]}))
        return out

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._begin()
        return self._complete(prompt, formatted)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        await self._abegin()
        return self._complete(prompt, formatted)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            self._begin()
            yield from self._completion_chunks(self._complete(prompt, formatted))

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            await self._abegin()
            for chunk in self._completion_chunks(self._complete(prompt, formatted)):
                yield chunk

        return gen()


class FakeFunctionCallingLLM(FakeLLM, FunctionCallingLLM):
    """`FakeLLM` with OpenAI-style tool calling (see the module docstring)."""

    model: str = "fake-tools-1"

    @classmethod
    def class_name(cls) -> str:
        return "FakeFunctionCallingLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return super().metadata.model_copy(update={"is_function_calling_model": True})

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
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
        return {
            "messages": messages,
            "tools": specs or None,
            "tool_choice": kwargs.pop("tool_choice", "required" if tool_required else "auto"),
            "parallel_tool_calls": allow_parallel_tool_calls,
            **kwargs,
        }

    def _respond(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        if not tools or (messages and messages[-1].role == MessageRole.TOOL):
            if messages and messages[-1].role == MessageRole.TOOL:
                result = messages[-1].content or ""
                text = f"{self.answer(_last_user_text(messages))} (tool said: {result})"
                message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
                return self._chat_response(messages, message)
            return super()._respond(messages, **kwargs)
        choice = kwargs.get("tool_choice")
        named = [t for t in tools if t["function"]["name"] == choice]
        spec = (named or tools)[0]["function"]
        question = _last_user_text(messages)
        args = _fill(spec.get("parameters") or {"type": "object"}, question)
        call_id = "call_" + hashlib.sha256(f"{spec['name']}|{question}".encode()).hexdigest()[:12]
        message = ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[ToolCallBlock(tool_call_id=call_id, tool_name=spec["name"], tool_kwargs=args)],
            additional_kwargs={
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": spec["name"], "arguments": json.dumps(args)},
                    }
                ]
            },
        )
        return self._chat_response(messages, message)

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        calls = [
            ToolSelection(
                tool_id=b.tool_call_id or "",
                tool_name=b.tool_name,
                tool_kwargs=b.tool_kwargs
                if isinstance(b.tool_kwargs, dict)
                else json.loads(b.tool_kwargs),
            )
            for b in blocks
        ]
        if not calls and error_on_no_tool_call:
            raise ValueError("Expected at least one tool call, got none.")
        return calls


__all__ = ["FakeFunctionCallingLLM", "FakeLLM", "tokens"]
