"""A deterministic fake chat model for the demo, the notebooks and tests.

It answers the questions of `semcache_demo.workload` with their intent's answer, and any
other question with a fixed text derived from it. It reports token usage like a real
provider, can sleep to simulate provider latency, supports ``bind_tools`` (it calls the
first tool with the question, and answers in text once a tool result is the last
message) and ``with_structured_output(method="json_schema")`` (it answers with JSON
that fits the schema), and counts the calls that reached it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, PrivateAttr

from .workload import answer_for


def _tokens(text: str) -> int:
    """A rough token count (about 4 characters a token), enough for cost arithmetic."""
    return max(1, (len(text) + 3) // 4)


def _question(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return messages[-1].text if messages else ""


def _fill(schema: dict[str, Any], answer: str) -> Any:
    """A value that satisfies a (simple) JSON schema, built from the answer."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _fill(sub, answer) for name, sub in props.items()}
    if kind == "array":
        return [_fill(schema.get("items", {"type": "string"}), answer)]
    if kind == "integer":
        return len(answer) % 100
    if kind == "number":
        return round((len(answer) % 100) / 10, 1)
    if kind == "boolean":
        return True
    if "enum" in schema:
        return schema["enum"][0]
    return answer


class FakeSupportChatModel(BaseChatModel):
    """A support bot that always gives the same answer to the same question.

    Attributes:
        model_name: part of LangChain's ``llm_string``, so two names never share entries.
        temperature: likewise.
        latency: seconds each call sleeps (``time.sleep`` / ``asyncio.sleep``).
        report_usage: ``False`` answers without ``usage_metadata`` (as some providers do).
    """

    model_name: str = "fake-support-1"
    temperature: float = 0.0
    latency: float = 0.0
    report_usage: bool = True
    _calls: int = PrivateAttr(default=0)
    # Threads call one model at once (the soak test): `+= 1` alone can lose a count.
    _calls_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        """How many calls reached the model (cache misses)."""
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "fake-support"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def answer(self, question: str) -> str:
        """The model's answer to ``question`` (deterministic)."""
        known = answer_for(question)
        if known is not None:
            return known
        tag = f"{self.model_name} t={self.temperature:g}"
        digest = hashlib.sha256(f"{tag}|{question}".encode()).hexdigest()[:8]
        return f"[{tag}] Answer {digest} to: {question}"

    def _respond(self, messages: list[BaseMessage], **kwargs: Any) -> ChatResult:
        with self._calls_lock:
            self._calls += 1
        question = _question(messages)
        answer = self.answer(question)
        tools = kwargs.get("tools") or []
        response_format = kwargs.get("response_format")
        if tools and isinstance(messages[-1], ToolMessage):
            # An agent step after a tool ran: answer with what the tool said.
            message = AIMessage(content=f"The tool says: {messages[-1].text}")
        elif tools:
            name = tools[0]["function"]["name"]
            params = tools[0]["function"].get("parameters", {"type": "object"})
            args = _fill(params, question)
            message = AIMessage(
                content="",
                tool_calls=[{"name": name, "args": args, "id": f"call_{_tokens(question)}"}],
            )
        elif response_format and response_format.get("type") == "json_schema":
            schema = response_format["json_schema"]["schema"]
            message = AIMessage(content=json.dumps(_fill(schema, answer)))
        else:
            message = AIMessage(content=answer)
        prompt_text = " ".join(m.text for m in messages)
        out_text = message.text or json.dumps(message.tool_calls)
        # The token-detail keys are optional at run time; some langchain-core releases
        # type them as required.
        if self.report_usage:
            message.usage_metadata = cast(
                UsageMetadata,
                {
                    "input_tokens": _tokens(prompt_text),
                    "output_tokens": _tokens(out_text),
                    "total_tokens": _tokens(prompt_text) + _tokens(out_text),
                },
            )
        message.response_metadata = {"model_name": self.model_name, "finish_reason": "stop"}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return self._respond(messages, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._respond(messages, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(  # type: ignore[override]
        self,
        schema: type[BaseModel],
        *,
        method: str = "json_schema",
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """JSON-schema structured output, marked for tracing the way providers mark it
        (``ls_structured_output_format``); ``include_raw=True`` returns
        ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``."""
        if method != "json_schema":
            raise NotImplementedError("the fake model supports method='json_schema' only")
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": schema.__name__,
                "schema": schema.model_json_schema(),
                "strict": True,
            },
        }
        bound = self.bind(
            response_format=response_format,
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
            **kwargs,
        )

        def parse(msg: BaseMessage) -> BaseModel:
            return schema.model_validate_json(msg.text)

        if not include_raw:
            return bound | RunnableLambda(parse)

        def with_raw(msg: BaseMessage) -> dict[str, Any]:
            try:
                return {"raw": msg, "parsed": parse(msg), "parsing_error": None}
            except ValueError as exc:
                return {"raw": msg, "parsed": None, "parsing_error": exc}

        return bound | RunnableLambda(with_raw)
