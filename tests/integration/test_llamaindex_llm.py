"""The LlamaIndex LLM wrapper against the real embedded Redis.

Deterministic fake LLMs answer misses; the real all-MiniLM-L6-v2 embeds questions
wherever similarity matters. Nothing here mocks Redis.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
)
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.base import BaseEvent
from llama_index_instrumentation.event_handlers import BaseEventHandler
from pydantic import BaseModel, Field

from llamaindex_semcache.events import SemanticCacheHitEvent, SemanticCacheMissEvent
from llamaindex_semcache.llm import (
    SemanticCacheFunctionCallingLLM,
    SemanticCacheLLM,
    wrap,
)
from semcache_core import CacheEngine, tenant
from semcache_demo.llamaindex_fakes import FakeFunctionCallingLLM, FakeLLM
from tests.conftest import CountingEmbeddings, hashed_embedder

Q = "How do I reset my password?"
PARAPHRASE = "I forgot my password, how can I reset it?"
OTHER = "Which payment methods do you accept?"


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def mark(response: ChatResponse | CompletionResponse) -> dict[str, Any] | None:
    value = response.additional_kwargs.get("semcache")
    return value if isinstance(value, dict) else None


class Recorder(BaseEventHandler):
    """Keeps the semcache events it sees."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (SemanticCacheHitEvent, SemanticCacheMissEvent)):
            self.events.append(event)

    def hits(self) -> list[SemanticCacheHitEvent]:
        return [e for e in self.events if isinstance(e, SemanticCacheHitEvent)]

    def misses(self) -> list[SemanticCacheMissEvent]:
        return [e for e in self.events if isinstance(e, SemanticCacheMissEvent)]


@pytest.fixture
def engine(make_engine: Callable[..., CacheEngine], embeddings: Any) -> CacheEngine:
    return make_engine(embedder=embeddings, threshold=0.8)


def close_llamaindex_loop() -> None:
    """Close the event loop llama_index leaves on the main thread.

    A sync chat-model query engine estimates prompt tokens through
    ``llama_index.core.async_utils.asyncio_run``, which creates an event loop with
    ``asyncio.get_event_loop()``, sets it for the thread and never closes it; garbage-
    collected in a later test, its self-pipe sockets raise ResourceWarning.
    """
    policy = asyncio.get_event_loop_policy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = policy.get_event_loop()
    except RuntimeError:
        return
    if not loop.is_running():
        loop.close()
        policy.set_event_loop(None)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# -- construction -----------------------------------------------------------------------
def test_wrap_picks_the_class_and_delegates_metadata(engine: CacheEngine) -> None:
    plain = wrap(FakeLLM(), engine)
    tools = wrap(FakeFunctionCallingLLM(), engine)
    assert type(plain) is SemanticCacheLLM and not isinstance(plain, FunctionCallingLLM)
    assert isinstance(tools, SemanticCacheFunctionCallingLLM)
    assert isinstance(tools, FunctionCallingLLM)
    assert tools.metadata.is_function_calling_model and tools.metadata.model_name == "fake-tools-1"
    assert plain.metadata == FakeLLM().metadata
    # A plain wrapper around a function-calling LLM does not claim what it cannot do.
    assert not SemanticCacheLLM(
        FakeFunctionCallingLLM(), engine
    ).metadata.is_function_calling_model
    assert plain.class_name() == "SemanticCacheLLM"
    assert tools.class_name() == "SemanticCacheFunctionCallingLLM"
    dumped = tools.to_dict()
    assert dumped["class_name"] == "SemanticCacheFunctionCallingLLM"
    assert dumped["llm"]["model"] == "fake-tools-1"  # the inner LLM, serialized as itself
    assert plain.engine is engine
    with pytest.raises(Exception, match="already wrapped"):
        wrap(plain, engine)


# -- the query engine -------------------------------------------------------------------
DOCS = [
    "To reset your password, open Settings, choose Security and click 'Reset password'.",
    "We accept Visa, Mastercard and PayPal. Invoices are sent by email.",
]


def test_query_engine_identical_query_hits_and_paraphrase_hits_semantically(
    make_engine: Callable[..., CacheEngine],
    counting_embeddings: CountingEmbeddings,
    settings: None,
    recorder: Recorder,
) -> None:
    engine = make_engine(embedder=counting_embeddings, threshold=0.8, dims=384)
    fake = FakeLLM()
    Settings.llm = wrap(fake, engine)
    # The index's own embeddings are constant: every query retrieves the same nodes, so
    # a paraphrase sees the same context, as a real retriever usually would.
    Settings.embed_model = MockEmbedding(embed_dim=8)
    query_engine = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS]
    ).as_query_engine(similarity_top_k=2)

    first = query_engine.query(Q)
    again = query_engine.query(Q)
    assert fake.calls == 1
    assert str(again) == str(first)
    assert recorder.hits()[-1].layer == "exact"

    # The QA template puts the retrieved context and the query in one user message. The
    # wrapper sees the template variables (LLM.predict is called with query_str), embeds
    # the query alone and matches the rendered template around it exactly.
    assert counting_embeddings.texts == [Q]

    paraphrased = query_engine.query(PARAPHRASE)
    assert fake.calls == 1
    assert str(paraphrased) == str(first)
    hit = recorder.hits()[-1]
    assert hit.layer == "semantic" and hit.similarity is not None and hit.similarity >= 0.8
    assert hit.cached_question == Q

    query_engine.query(OTHER)
    assert fake.calls == 2


def test_without_question_vars_a_templated_call_is_exact_only(
    make_engine: Callable[..., CacheEngine],
    counting_embeddings: CountingEmbeddings,
    settings: None,
) -> None:
    engine = make_engine(embedder=counting_embeddings, threshold=0.8, dims=384)
    fake = FakeLLM()
    Settings.llm = wrap(fake, engine, question_vars=())
    Settings.embed_model = MockEmbedding(embed_dim=8)
    query_engine = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS]
    ).as_query_engine()
    query_engine.query(Q)
    query_engine.query(Q)
    assert fake.calls == 1  # identical queries still hit exactly
    query_engine.query(PARAPHRASE)
    assert fake.calls == 2
    # Nothing names the question, so nothing is embedded: the rendered prompt is
    # dominated by the context, and a semantic match would compare documents, not
    # questions. The call is exact-only rather than guessed.
    assert counting_embeddings.texts == []


def test_completion_model_query_engine_isolates_the_query_too(
    make_engine: Callable[..., CacheEngine],
    counting_embeddings: CountingEmbeddings,
    settings: None,
) -> None:
    engine = make_engine(embedder=counting_embeddings, threshold=0.8, dims=384)
    fake = FakeLLM(chat_model=False)
    Settings.llm = wrap(fake, engine)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    query_engine = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS]
    ).as_query_engine()
    first = query_engine.query(Q)
    assert str(query_engine.query(PARAPHRASE)) == str(first)
    assert fake.calls == 1
    assert counting_embeddings.texts == [Q, PARAPHRASE]


# -- the agent --------------------------------------------------------------------------
# The workflows package (under FunctionAgent) builds an agent with inspect.getmembers,
# which touches pydantic's deprecated instance attributes (__fields__, __fields_set__,
# model_computed_fields): warnings raised from inspect, not from our code.
WORKFLOWS_INSPECT = "ignore::pydantic.warnings.PydanticDeprecationWarning:inspect"


@pytest.mark.filterwarnings(WORKFLOWS_INSPECT)
@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_second_run_is_served_from_the_cache(
    engine: CacheEngine, streaming: bool
) -> None:
    tool_runs: list[str] = []

    def get_weather(city: str) -> str:
        """Today's weather in a city."""
        tool_runs.append(city)
        return f"Sunny, 21 C in {city}"

    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine)

    async def run() -> str:
        agent = FunctionAgent(
            tools=[FunctionTool.from_defaults(fn=get_weather)],
            llm=llm,
            system_prompt="You answer weather questions with the tool.",
            streaming=streaming,
        )
        return str(await agent.run(user_msg="What is the weather in Paris?"))

    first = await run()
    assert fake.calls == 2  # the tool-call step and the answer step
    assert len(tool_runs) == 1 and "tool said: Sunny" in first

    second = await run()
    assert fake.calls == 2  # both LLM steps came from the cache
    assert len(tool_runs) == 2  # the cached tool call still parsed and ran
    assert second == first


def test_cached_tool_call_parses_like_a_fresh_one(engine: CacheEngine) -> None:
    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine)
    assert isinstance(llm, SemanticCacheFunctionCallingLLM)
    tool = FunctionTool.from_defaults(fn=lambda city: city, name="weather", description="w")
    fresh = llm.chat_with_tools([tool], user_msg="weather in Oslo?", tool_required=True)
    cached = llm.chat_with_tools([tool], user_msg="weather in Oslo?", tool_required=True)
    assert fake.calls == 1 and mark(cached) is not None
    assert llm.get_tool_calls_from_response(cached) == llm.get_tool_calls_from_response(fresh)
    assert cached.message.additional_kwargs["tool_calls"][0]["function"]["name"] == "weather"
    # tool_required is part of the call (tool_choice): a different choice never shares.
    llm.chat_with_tools([tool], user_msg="weather in Oslo?", tool_required=False)
    assert fake.calls == 2


def test_chat_calls_that_differ_only_in_tools_never_share(engine: CacheEngine) -> None:
    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine)
    assert isinstance(llm, SemanticCacheFunctionCallingLLM)
    weather = FunctionTool.from_defaults(fn=lambda city: city, name="weather", description="w")
    clock = FunctionTool.from_defaults(fn=lambda city: city, name="local_time", description="t")
    first = llm.chat_with_tools([weather], user_msg="Oslo?", tool_required=True)
    other = llm.chat_with_tools([clock], user_msg="Oslo?", tool_required=True)
    assert fake.calls == 2 and mark(other) is None  # another tool set: the LLM answers
    assert [c.tool_name for c in llm.get_tool_calls_from_response(first)] == ["weather"]
    assert [c.tool_name for c in llm.get_tool_calls_from_response(other)] == ["local_time"]
    # Each is cached under its own tools.
    again = llm.chat_with_tools([clock], user_msg="Oslo?", tool_required=True)
    assert fake.calls == 2 and mark(again) is not None
    assert [c.tool_name for c in llm.get_tool_calls_from_response(again)] == ["local_time"]
    # The same through plain chat(): the tools are call arguments like any other.
    specs = {t.metadata.name: [t.metadata.to_openai_tool()] for t in (weather, clock)}
    llm.chat(user("Bergen?"), tools=specs["weather"])
    assert mark(llm.chat(user("Bergen?"), tools=specs["local_time"])) is None
    assert fake.calls == 4


async def test_async_chat_calls_that_differ_only_in_tools_never_share(
    engine: CacheEngine,
) -> None:
    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine)
    assert isinstance(llm, SemanticCacheFunctionCallingLLM)
    weather = FunctionTool.from_defaults(fn=lambda city: city, name="weather", description="w")
    clock = FunctionTool.from_defaults(fn=lambda city: city, name="local_time", description="t")
    await llm.achat_with_tools([weather], user_msg="Oslo?", tool_required=True)
    other = await llm.achat_with_tools([clock], user_msg="Oslo?", tool_required=True)
    assert fake.calls == 2 and mark(other) is None
    assert [c.tool_name for c in llm.get_tool_calls_from_response(other)] == ["local_time"]
    await engine.aclose()


# -- structured output ------------------------------------------------------------------
class Forecast(BaseModel):
    city: str
    high_c: int
    sunny: bool


class Summary(BaseModel):
    city: str
    text: str


FORECAST = PromptTemplate("Give the forecast for {city}.")


def test_structured_predict_is_cached_and_revalidated(engine: CacheEngine) -> None:
    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine)
    first = llm.structured_predict(Forecast, FORECAST, city="Paris")
    second = llm.structured_predict(Forecast, FORECAST, city="Paris")
    assert fake.calls == 1
    assert isinstance(second, Forecast) and second == first and second is not first
    # The output schema is part of the key: another class never gets Forecast's JSON.
    summary = llm.structured_predict(Summary, FORECAST, city="Paris")
    assert isinstance(summary, Summary) and fake.calls == 2


async def test_astructured_predict_is_cached(engine: CacheEngine) -> None:
    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine)
    first = await llm.astructured_predict(Forecast, FORECAST, city="Rome")
    second = await llm.astructured_predict(Forecast, FORECAST, city="Rome")
    assert fake.calls == 1 and isinstance(second, Forecast) and second == first
    # The sync and async paths share entries.
    assert llm.structured_predict(Forecast, FORECAST, city="Rome") == first
    assert fake.calls == 1


def test_structured_predict_with_a_text_completion_program(engine: CacheEngine) -> None:
    class Echo(BaseModel):
        text: str

    fake = FakeLLM()
    llm = wrap(fake, engine)
    # The fake's text is no JSON: the inner program fails and nothing is cached.
    with pytest.raises(ValueError):
        llm.structured_predict(Echo, PromptTemplate("Say {x}"), x="hi")
    assert engine.count() == 0


# -- streams ----------------------------------------------------------------------------
def test_stream_chat_records_and_replays(engine: CacheEngine, recorder: Recorder) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine)
    fresh = list(llm.stream_chat(user(Q)))
    assert len(fresh) > 1 and fake.calls == 1
    replay = list(llm.stream_chat(user(Q)))
    assert fake.calls == 1
    assert len(replay) > 1
    assert "".join(c.delta or "" for c in replay) == fresh[-1].message.content
    assert replay[-1].message.content == fresh[-1].message.content
    assert all(mark(c) is not None for c in replay)
    assert recorder.hits()[-1].endpoint == "stream_chat"
    # chat and stream_chat share entries.
    assert llm.chat(user(Q)).message.content == fresh[-1].message.content
    assert fake.calls == 1


def test_an_abandoned_stream_is_not_stored(engine: CacheEngine) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine)
    stream = llm.stream_chat(user(Q))
    next(stream)
    stream.close()
    list(llm.stream_chat(user(Q)))
    assert fake.calls == 2


def test_stream_complete_records_and_replays(engine: CacheEngine) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine)
    fresh = list(llm.stream_complete(Q))
    replay = list(llm.stream_complete(Q))
    assert fake.calls == 1
    assert "".join(c.delta or "" for c in replay) == fresh[-1].text == replay[-1].text
    assert llm.complete(Q).text == fresh[-1].text and fake.calls == 1


async def test_async_endpoints_record_and_replay(engine: CacheEngine) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine)
    fresh = [c async for c in await llm.astream_chat(user(Q))]
    replay = [c async for c in await llm.astream_chat(user(Q))]
    assert fake.calls == 1 and len(replay) > 1
    assert "".join(c.delta or "" for c in replay) == fresh[-1].message.content
    assert (await llm.achat(user(PARAPHRASE))).message.content == fresh[-1].message.content
    assert fake.calls == 1  # a semantic hit, through redis.asyncio and aembed

    done = [c async for c in await llm.astream_complete(OTHER)]
    again = [c async for c in await llm.astream_complete(OTHER)]
    assert fake.calls == 2 and again[-1].text == done[-1].text
    assert (await llm.acomplete(OTHER)).text == done[-1].text
    assert fake.calls == 2


# -- keys and isolation -----------------------------------------------------------------
def test_models_and_parameters_never_share(engine: CacheEngine) -> None:
    cold, warm, mild = (FakeLLM(temperature=t) for t in (0.0, 0.7, 0.3))
    a = wrap(cold, engine)
    a.chat(user(Q))
    assert mark(wrap(warm, engine).chat(user(Q))) is None
    assert mark(wrap(mild, engine).chat(user(PARAPHRASE))) is None  # nor semantically
    other = FakeLLM(model="fake-llm-2")
    assert mark(wrap(other, engine).chat(user(Q))) is None
    assert (cold.calls, warm.calls, mild.calls, other.calls) == (1, 1, 1, 1)
    # A parameter changed on the inner LLM after wrapping counts at once.
    cold.temperature = 0.5
    assert mark(a.chat(user(Q))) is None
    assert cold.calls == 2


def test_history_system_prompt_and_call_kwargs_are_matched_exactly(engine: CacheEngine) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine)
    llm.chat(user(Q))
    system = [ChatMessage(role=MessageRole.SYSTEM, content="You are a pirate."), *user(Q)]
    llm.chat(system)
    history = [
        ChatMessage(role=MessageRole.USER, content="I am on the mobile app."),
        ChatMessage(role=MessageRole.ASSISTANT, content="Noted."),
        *user(Q),
    ]
    llm.chat(history)
    llm.chat(user(Q), max_tokens=5)
    assert fake.calls == 4
    llm.chat(history[:-1] + user(PARAPHRASE))  # same history, paraphrased question
    assert fake.calls == 4


def test_tenants_are_isolated(engine: CacheEngine) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine)
    with tenant("acme"):
        llm.chat(user(Q))
    with tenant("globex"):
        assert mark(llm.chat(user(Q))) is None
    with tenant("acme"):
        assert mark(llm.chat(user(Q))) is not None
    assert fake.calls == 2
    fixed = wrap(fake, engine, tenant="globex")
    with tenant("acme"):
        assert mark(fixed.chat(user(Q))) is not None  # the fixed tenant wins
    assert fake.calls == 2
    assert engine.stats()["tenants"]["globex"]["stores"] == 1


def test_hits_carry_no_usage_and_are_not_token_counted(
    engine: CacheEngine, recorder: Recorder
) -> None:
    counter = TokenCountingHandler()
    fake = FakeLLM()
    llm = wrap(fake, engine)
    llm.callback_manager = CallbackManager([counter])  # as Settings and query engines do
    assert fake.callback_manager is llm.callback_manager

    miss = llm.chat(user(Q))
    hit = llm.chat(user(Q))
    assert miss.additional_kwargs["total_tokens"] > 0 and mark(miss) is None
    assert hit.raw == {"semcache": mark(hit)}
    assert not {"prompt_tokens", "completion_tokens", "total_tokens"} & set(hit.additional_kwargs)
    marker = mark(hit)
    assert marker is not None and marker["hit"] and marker["layer"] == "exact"
    assert marker["similarity"] == 1.0 and marker["stale"] is False
    assert len(counter.llm_token_counts) == 1
    assert counter.total_llm_token_count == miss.additional_kwargs["total_tokens"]
    (event,) = recorder.hits()
    assert event.layer == "exact" and event.endpoint == "chat" and event.tenant == "default"
    (missed,) = recorder.misses()
    assert missed.outcome == "miss"


# -- stale-if-error and fail-open -------------------------------------------------------
def test_stale_if_error_serves_an_expired_entry(
    make_engine: Callable[..., CacheEngine], embeddings: Any, recorder: Recorder
) -> None:
    clock = Clock()
    engine = make_engine(embedder=embeddings, clock=clock, ttl=60, stale_grace=3600)
    fake = FakeLLM()
    llm = wrap(fake, engine)
    fresh = llm.chat(user(Q))
    clock.now += 120  # expired, within the grace period
    error = RuntimeError("provider is down")
    fake.fail_with(error)
    served = llm.chat(user(Q))
    assert served.message.content == fresh.message.content
    marker = mark(served)
    assert marker is not None and marker["stale"] is True
    assert recorder.hits()[-1].stale
    streamed = list(llm.stream_chat(user(Q)))
    assert streamed[-1].message.content == fresh.message.content
    assert engine.stats()["tenants"]["default"]["stale_served"] == 2

    with pytest.raises(RuntimeError) as raised:
        llm.chat(user(OTHER))
    assert raised.value is error  # the provider's own exception object
    with pytest.raises(RuntimeError) as raised:
        wrap(fake, engine, stale_if_error=False).chat(user(Q))
    assert raised.value is error


async def test_async_stale_if_error(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    clock = Clock()
    engine = make_engine(embedder=embeddings, clock=clock, ttl=60, stale_grace=3600)
    fake = FakeLLM()
    llm = wrap(fake, engine)
    fresh = await llm.acomplete(Q)
    clock.now += 120
    error = ConnectionError("timeout")
    fake.fail_with(error)
    served = await llm.acomplete(Q)
    assert served.text == fresh.text and (mark(served) or {}).get("stale") is True
    chunks = [c async for c in await llm.astream_complete(Q)]
    assert chunks[-1].text == fresh.text
    with pytest.raises(ConnectionError) as raised:
        await llm.achat(user(OTHER))
    assert raised.value is error


def test_a_dead_redis_never_breaks_the_call() -> None:
    engine = CacheEngine(
        "redis://127.0.0.1:1", embedder=hashed_embedder(), validate=False, dims=16
    )
    fake = FakeLLM()
    llm = wrap(fake, engine)
    assert llm.chat(user(Q)).message.content == fake.answer(Q)
    assert list(llm.stream_chat(user(Q)))[-1].message.content == fake.answer(Q)
    assert llm.complete(Q).text == fake.answer(Q)
    assert fake.calls == 3
    assert engine.stats()["tenants"]["default"]["errors"] > 0
    engine.close()


def test_an_unserializable_answer_is_returned_and_not_stored(engine: CacheEngine) -> None:
    class Opaque:
        pass

    class OddLLM(FakeLLM):
        def _respond(self, messages: Any, **kwargs: Any) -> ChatResponse:
            response = super()._respond(messages, **kwargs)
            response.additional_kwargs["handle"] = Opaque()
            return response

    fake = OddLLM()
    llm = wrap(fake, engine)
    assert isinstance(llm.chat(user(Q)).additional_kwargs["handle"], Opaque)
    llm.chat(user(Q))
    assert fake.calls == 2 and engine.count() == 0


def test_a_failing_event_handler_does_not_break_the_call(engine: CacheEngine) -> None:
    class Broken(BaseEventHandler):
        @classmethod
        def class_name(cls) -> str:
            return "Broken"

        def handle(self, event: BaseEvent, **kwargs: Any) -> None:
            if isinstance(event, SemanticCacheHitEvent):
                raise RuntimeError("handler bug")

    root = get_dispatcher()
    broken = Broken()
    root.add_event_handler(broken)
    try:
        llm = wrap(FakeLLM(), engine)
        first = llm.chat(user(Q))
        assert llm.chat(user(Q)).message.content == first.message.content
    finally:
        root.event_handlers.remove(broken)


# -- shadow mode ------------------------------------------------------------------------
def test_shadow_mode_does_not_serve_a_paraphrase_and_records_a_verdict(
    engine: CacheEngine,
) -> None:
    engine.set_policy("acme", semantic="shadow", promotion_threshold=None)
    fake = FakeLLM()
    llm = wrap(fake, engine)
    with tenant("acme"):
        first = llm.chat(user(Q))
        assert mark(llm.chat(user(Q))) is not None  # the exact layer still serves
        shadowed = llm.chat(user(PARAPHRASE))
    assert mark(shadowed) is None and fake.calls == 2
    (verdict,) = engine.verdicts("acme")
    assert verdict.similarity >= 0.8
    # The fake answers paraphrases differently, so the candidate did not agree.
    assert verdict.agreed is (shadowed.message.content == first.message.content)


# -- the codec --------------------------------------------------------------------------


def test_hits_count_the_tokens_and_dollars_they_saved(
    make_engine: Callable[..., CacheEngine],
) -> None:
    from llama_index.core.llms import ChatMessage

    from llamaindex_semcache import wrap
    from semcache_demo.llamaindex_fakes import FakeLLM

    engine = make_engine(embedder=hashed_embedder(), prices={"fake-llm-1": (1.0, 2.0)})
    llm = wrap(FakeLLM(), engine)
    messages = [ChatMessage(role="user", content="How do I reset my password?")]
    first = llm.chat(messages)
    usage = first.raw["usage"]  # the provider's own report on the miss
    llm.chat(messages)
    stats = engine.stats(totals=False)["tenants"]["default"]
    assert stats["exact_hits"] == 1
    assert stats["tokens_saved"] == usage["total_tokens"] > 0
    expected = (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    assert stats["cost_saved_usd"] == pytest.approx(expected)
