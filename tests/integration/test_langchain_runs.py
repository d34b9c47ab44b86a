"""What a LangChain run tells the cache: the tenant from run metadata (every entry
point, child runs, LangGraph), structured output as a request kind, and the question
declared for templated prompts (explicitly, or from the prompt's variables)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_semcache import CachedStreamingChatModel, SemanticCache, cache_context, tenant
from semcache_core import CacheEngine, ConfigurationError, Outcome, last_lookup
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import constant_embedder
from tests.streaming_fake import FakeStreamingChatModel

Q = "How do I reset my password?"
PARAPHRASE = "I forgot my password, how can I reset it?"
TENANTS = ("acme", "globex", "initech")


def cfg(tenant_id: Any) -> RunnableConfig:
    return {"metadata": {"semcache_tenant": tenant_id}}


def layer(message: BaseMessage) -> str | None:
    marker = message.response_metadata.get("semcache")
    return marker["layer"] if marker else None


def streamed(chunks: list[Any]) -> Any:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


@tool
def order_status(order_id: str) -> str:
    """Look up the status of an order."""
    return f"order {order_id!r} shipped yesterday"


@pytest.fixture
def engine(make_engine: Callable[..., CacheEngine]) -> CacheEngine:
    # Every question has the same vector: any entry of a tenant is a semantic candidate
    # for any request of that tenant, so only the tenant keeps answers apart.
    return make_engine(embedder=constant_embedder(), threshold=0.5)


@pytest.fixture
def cache(engine: CacheEngine) -> SemanticCache:
    return SemanticCache(engine=engine)


def test_run_metadata_tenant_sync_entry_points(cache: SemanticCache, engine: CacheEngine) -> None:
    model = FakeSupportChatModel(cache=cache)
    streaming = CachedStreamingChatModel(model=FakeStreamingChatModel(), cache=cache)
    for t in TENANTS:  # each tenant's first ask is a miss: nothing crosses tenants
        assert layer(model.invoke(Q, config=cfg(t))) is None
    assert model.calls == 3
    for t in TENANTS:
        assert layer(model.invoke(Q, config=cfg(t))) == "exact"
    # batch: one config per input, each its own tenant
    out = model.batch([Q, Q], config=[cfg("acme"), cfg("umbrella")])
    assert [layer(m) for m in out] == ["exact", None] and model.calls == 4
    # stream: served from the tenant's entry written by invoke, never another's
    for t in TENANTS:
        assert layer(streamed(list(streaming.stream(Q, config=cfg(t))))) == "exact"
    assert layer(streamed(list(streaming.stream(Q, config=cfg("hooli"))))) is None
    # the run's metadata wins over an ambient tenant() block, and goes to child runs
    with tenant("acme"):
        assert layer(model.invoke(Q, config=cfg("soylent"))) is None
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    assert layer(chain.invoke({"q": Q}, config=cfg("soylent"))) == "exact"
    assert layer(chain.invoke({"q": Q}, config=cfg("tyrell"))) is None
    for t in (*TENANTS, "umbrella", "hooli", "soylent", "tyrell"):
        assert engine.count(tenant=t) == 1, t
    # no metadata: the default tenant, which has nothing yet
    assert layer(model.invoke(Q)) is None


async def test_run_metadata_tenant_async_entry_points(
    cache: SemanticCache, engine: CacheEngine
) -> None:
    model = FakeSupportChatModel(cache=cache)
    streaming = CachedStreamingChatModel(model=FakeStreamingChatModel(), cache=cache)
    first = await asyncio.gather(*(model.ainvoke(Q, config=cfg(t)) for t in TENANTS))
    assert [layer(m) for m in first] == [None, None, None] and model.calls == 3
    again = await model.abatch([Q] * 3, config=[cfg(t) for t in TENANTS])
    assert [layer(m) for m in again] == ["exact"] * 3
    for t in TENANTS:
        chunks = [c async for c in streaming.astream(Q, config=cfg(t))]
        assert layer(streamed(chunks)) == "exact"
    chunks = [c async for c in streaming.astream(Q, config=cfg("hooli"))]
    assert layer(streamed(chunks)) is None
    assert all(engine.count(tenant=t) == 1 for t in (*TENANTS, "hooli"))


@pytest.mark.parametrize("bad", ["", 42, None, ["acme"]])
def test_invalid_run_metadata_tenant_raises(cache: SemanticCache, bad: Any) -> None:
    model = FakeSupportChatModel(cache=cache)
    with pytest.raises(ConfigurationError, match="semcache_tenant"):
        model.invoke(Q, config=cfg(bad))
    streaming = CachedStreamingChatModel(model=FakeStreamingChatModel(), cache=cache)
    with pytest.raises(ConfigurationError, match="semcache_tenant"):
        list(streaming.stream(Q, config=cfg(bad)))
    assert model.calls == 0


async def test_invalid_run_metadata_tenant_raises_async(cache: SemanticCache) -> None:
    model = FakeSupportChatModel(cache=cache)
    with pytest.raises(ConfigurationError, match="semcache_tenant"):
        await model.ainvoke(Q, config=cfg(""))


def test_run_metadata_tenant_through_a_langgraph_agent(
    cache: SemanticCache, engine: CacheEngine
) -> None:
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    model = FakeSupportChatModel(cache=cache)
    bound = model.bind_tools([order_status])

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        # no config passed on: LangGraph's run context carries the metadata down
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", call_model)
    graph.add_node("tools", ToolNode([order_status]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    agent = graph.compile()

    def ask(t: str) -> list[AIMessage]:
        start: Any = {"messages": [("user", "Where is order A-17?")]}
        state = agent.invoke(start, config=cfg(t))
        return [m for m in state["messages"] if isinstance(m, AIMessage)]

    first = ask("acme")
    assert len(first) == 2 and model.calls == 2
    assert [layer(m) for m in ask("globex")] == [None, None] and model.calls == 4
    assert [layer(m) for m in ask("acme")] == ["exact", "exact"] and model.calls == 4
    assert engine.count(tenant="acme") == 2 and engine.count(tenant="globex") == 2
    assert engine.count(tenant="default") == 0


# -- structured output ---------------------------------------------------------------
class Person(BaseModel):
    name: str
    age: int


def test_structured_extraction_near_miss_is_refused_by_the_verifier(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=embeddings, threshold=0.9))
    model = FakeSupportChatModel(cache=cache)
    extract = model.with_structured_output(Person)
    first = extract.invoke("Alice is 30 years old")
    assert isinstance(first, Person)
    second = extract.invoke("Alice is 31 years old")  # 0.985 similar: was served Person(30)
    assert model.calls == 2
    looked = last_lookup()
    assert looked is not None and not looked.hit and looked.outcome is Outcome.GUARDED
    # a hit returns the user's class; last_lookup() says where it came from
    again = extract.invoke("Alice is 31 years old")
    assert again == second and model.calls == 2
    looked = last_lookup()
    assert looked is not None and looked.hit and looked.layer == "exact"


async def test_structured_hit_marker_async_with_include_raw(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    # Async chains end their runs in a shielded task (a copied context), so the async
    # way to see a structured hit is the raw message's marker.
    cache = SemanticCache(engine=make_engine(embedder=embeddings))
    model = FakeSupportChatModel(cache=cache)
    extract = model.with_structured_output(Person, include_raw=True)
    first = await extract.ainvoke("Bob is 40 years old")
    again = await extract.ainvoke("Bob is 40 years old")
    assert model.calls == 1 and again["parsed"] == first["parsed"]
    assert again["raw"].response_metadata["semcache"]["layer"] == "exact"
    guarded = await extract.ainvoke("Bob is 41 years old")
    assert model.calls == 2 and "semcache" not in guarded["raw"].response_metadata


def test_include_raw_carries_the_hit_marker(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=embeddings))
    extract = FakeSupportChatModel(cache=cache).with_structured_output(Person, include_raw=True)
    first = extract.invoke("Carol is 52 years old")
    assert "semcache" not in first["raw"].response_metadata
    again = extract.invoke("Carol is 52 years old")
    assert again["parsed"] == first["parsed"] and isinstance(again["parsed"], Person)
    assert again["raw"].response_metadata["semcache"]["layer"] == "exact"


@pytest.mark.parametrize("marked", [True, False])
def test_structured_requests_are_a_kind_exact_only_kinds_can_keep_exact(
    make_engine: Callable[..., CacheEngine], embeddings: Any, marked: bool
) -> None:
    engine = make_engine(embedder=embeddings, threshold=0.8, exact_only_kinds=("structured",))
    cache = SemanticCache(engine=engine)
    model = FakeSupportChatModel(cache=cache)

    class Answer(BaseModel):
        answer: str

    if marked:  # with_structured_output: marked on the run (ls_structured_output_format)
        structured: Any = model.with_structured_output(Answer)
    else:  # a bare response_format binding: read from the llm_string
        structured = model.bind(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Answer", "schema": Answer.model_json_schema()},
            }
        )
    structured.invoke(Q)
    structured.invoke(PARAPHRASE)
    assert model.calls == 2  # no semantic hit for a structured request
    structured.invoke(Q)
    assert model.calls == 2  # exact hits still served
    # plain chat requests on the same engine still hit semantically
    model.invoke(Q)
    assert layer(model.invoke(PARAPHRASE)) == "semantic"


# -- templated prompts: the declared question ----------------------------------------
INSTRUCTION = (
    "You are a careful scheduling assistant for a dental practice. Read the patient's "
    "message below and extract the appointment date it asks for, as an ISO date; answer "
    "with the date only, and with 'none' if the message names no date. "
    "Extract the appointment date from this message: {text}"
)
MESSAGE = "Could I book a cleaning on March 3rd?"
REWORDED = "Is it possible to book a cleaning for March 3rd?"
OTHER_DATE = "Could I book a cleaning on March 4th?"


def test_declared_question_through_a_prompt_template_chain(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=embeddings, threshold=0.8))
    model = FakeSupportChatModel(cache=cache)
    chain = ChatPromptTemplate.from_messages([("human", INSTRUCTION)]) | model

    def ask(text: str, declared: bool = True) -> BaseMessage:
        if not declared:
            return chain.invoke({"text": text})
        with cache_context(question=text):
            return chain.invoke({"text": text})

    ask(MESSAGE)
    assert layer(ask(REWORDED)) == "semantic" and model.calls == 1
    assert layer(ask(OTHER_DATE)) is None and model.calls == 2  # never another date
    assert layer(ask(OTHER_DATE)) == "exact"
    # a different instruction around the same text is another scope
    other = ChatPromptTemplate.from_messages([("human", "Translate to French: {text}")]) | model
    with cache_context(question=MESSAGE):
        assert layer(other.invoke({"text": MESSAGE})) is None


def test_question_vars_take_the_question_from_the_prompt_template_run(
    make_engine: Callable[..., CacheEngine], counting_embeddings: Any
) -> None:
    cache = SemanticCache(
        engine=make_engine(embedder=counting_embeddings, threshold=0.8, dims=384),
        question_vars=("text",),
    )
    model = FakeSupportChatModel(cache=cache)
    chain = ChatPromptTemplate.from_messages([("human", INSTRUCTION)]) | model
    chain.invoke({"text": MESSAGE})
    # only the variable's value was embedded, never the instruction around it
    assert counting_embeddings.texts == [MESSAGE]
    assert layer(chain.invoke({"text": REWORDED})) == "semantic" and model.calls == 1
    assert layer(chain.invoke({"text": OTHER_DATE})) is None and model.calls == 2
    # the template's other variables are part of the scope (they stay in the template)
    translate = ChatPromptTemplate.from_messages([("human", "Translate to {lang}: {text}")])
    tchain = translate | model
    tchain.invoke({"lang": "French", "text": MESSAGE})
    assert layer(tchain.invoke({"lang": "German", "text": MESSAGE})) is None
    assert layer(tchain.invoke({"lang": "French", "text": REWORDED})) == "semantic"
    # a model call without a prompt run is unaffected: its last human message is the question
    model.invoke("How do I reset my password?")
    assert counting_embeddings.texts[-1] == "How do I reset my password?"


async def test_question_vars_async(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    cache = SemanticCache(
        engine=make_engine(embedder=embeddings, threshold=0.8), question_vars=("text",)
    )
    model = FakeSupportChatModel(cache=cache)
    chain = ChatPromptTemplate.from_messages([("human", INSTRUCTION)]) | model
    await chain.ainvoke({"text": MESSAGE})
    assert layer(await chain.ainvoke({"text": REWORDED})) == "semantic"
    assert layer(await chain.ainvoke({"text": OTHER_DATE})) is None and model.calls == 2


def test_without_a_declared_question_the_long_instruction_dominates(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=embeddings, threshold=0.8))
    model = FakeSupportChatModel(cache=cache)
    chain = ChatPromptTemplate.from_messages([("human", INSTRUCTION)]) | model
    chain.invoke({"text": MESSAGE})
    out = chain.invoke({"text": OTHER_DATE})
    # whole-prompt similarity is near 1 here; only the verifier keeps the date apart
    assert layer(out) is None and model.calls == 2
