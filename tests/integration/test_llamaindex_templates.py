"""Templated LlamaIndex calls against the real embedded Redis and all-MiniLM-L6-v2.

What the user varies is embedded; the template, the other variables, the chat history,
the output schema and the tools are scope. Each test reproduces a wrong serve seen
before the fix (the similarity it scored is in the test's docstring).

Several tests run with a verifier that accepts every candidate: they prove that the
*scope* keeps the requests apart, not only the verifier, which is the second line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole, ToolCallBlock
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.prompts import ChatPromptTemplate, PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from llamaindex_semcache.llm import SemanticCacheFunctionCallingLLM, wrap
from semcache_core import CacheEngine, last_lookup
from semcache_demo.llamaindex_fakes import FakeFunctionCallingLLM, FakeLLM
from tests.conftest import CountingEmbeddings
from tests.integration.test_llamaindex_llm import (
    WORKFLOWS_INSPECT,
    Recorder,
    mark,
    user,
)


def accept_all(query: str, candidate: str) -> bool:
    """A verifier that serves every candidate near enough: only the scope protects."""
    return True


@pytest.fixture
def counting(counting_embeddings: CountingEmbeddings) -> CountingEmbeddings:
    return counting_embeddings


def engine_with(
    make_engine: Callable[..., CacheEngine], embedder: Any, **kwargs: Any
) -> CacheEngine:
    kwargs.setdefault("threshold", 0.8)
    return make_engine(embedder=embedder, dims=384, **kwargs)


# -- 1. only the user's variable part is embedded ---------------------------------------
SENTIMENT = PromptTemplate(
    "Classify the sentiment of the customer message as positive or negative.\n"
    "Message: {question}\nSentiment:"
)
REVIEW = "The delivery was late and the box was damaged."
REVIEW_PARAPHRASE = "The delivery came late and the box was damaged."


@pytest.mark.parametrize("chat_model", [True, False])
def test_predict_embeds_only_the_question_variable(
    make_engine: Callable[..., CacheEngine], counting: CountingEmbeddings, chat_model: bool
) -> None:
    fake = FakeLLM(chat_model=chat_model)
    llm = wrap(fake, engine_with(make_engine, counting))
    first = llm.predict(SENTIMENT, question=REVIEW)
    assert llm.predict(SENTIMENT, question=REVIEW) == first
    assert llm.predict(SENTIMENT, question=REVIEW_PARAPHRASE) == first
    assert fake.calls == 1
    hit = last_lookup()
    assert hit is not None and hit.layer == "semantic" and hit.question == REVIEW
    # The template text never reaches the embedder: only the variable part does.
    assert counting.texts == [REVIEW, REVIEW_PARAPHRASE]


async def test_apredict_astream_and_stream_embed_only_the_question_variable(
    make_engine: Callable[..., CacheEngine], counting: CountingEmbeddings
) -> None:
    fake = FakeLLM()
    llm = wrap(fake, engine_with(make_engine, counting))
    first = await llm.apredict(SENTIMENT, question=REVIEW)
    streamed = "".join(list(llm.stream(SENTIMENT, question=REVIEW_PARAPHRASE)))
    astreamed = "".join([t async for t in await llm.astream(SENTIMENT, question=REVIEW)])
    assert first == streamed == astreamed and fake.calls == 1
    assert set(counting.texts) | set(counting.async_texts) == {REVIEW, REVIEW_PARAPHRASE}


def test_a_template_without_a_question_variable_is_exact_only(
    make_engine: Callable[..., CacheEngine], counting: CountingEmbeddings
) -> None:
    template = PromptTemplate("Summarize this ticket in one line:\n{ticket}")
    fake = FakeLLM()
    llm = wrap(fake, engine_with(make_engine, counting, verifier=accept_all))
    first = llm.predict(template, ticket=REVIEW)
    assert llm.predict(template, ticket=REVIEW) == first  # an exact repeat still hits
    assert fake.calls == 1
    llm.predict(template, ticket=REVIEW_PARAPHRASE)
    assert fake.calls == 2  # never a semantic guess: nothing tells what the user varied
    assert counting.texts == []  # nothing was embedded at all


def test_other_variables_are_scope(
    make_engine: Callable[..., CacheEngine], counting: CountingEmbeddings
) -> None:
    template = PromptTemplate("Answer in {language}.\nQuestion: {question}")
    fake = FakeLLM()
    llm = wrap(fake, engine_with(make_engine, counting, verifier=accept_all))
    llm.predict(template, language="English", question=REVIEW)
    llm.predict(template, language="German", question=REVIEW)
    llm.predict(template, language="German", question=REVIEW_PARAPHRASE)
    assert fake.calls == 2


# -- 2. chat engines: the conversation is scope -----------------------------------------
ACCOUNTS = [
    "Savings accounts earn 2.1 percent interest a year.",
    "The fixed-rate mortgage costs 4.5 percent interest a year.",
]
_FOLLOW_UP = re.compile(
    r"(?:<Follow Up Message>|Follow Up Input:)\s*(?P<q>.+?)\s*"
    r"(?:<Standalone question>|Standalone question:)",
    re.DOTALL,
)


class Condenser(FakeLLM):
    """Condenses a follow-up as a real LLM would: the follow-up plus its topic."""

    def answer(self, question: str) -> str:
        found = _FOLLOW_UP.search(question)
        if found is None:
            return super().answer(question)
        history = question[: found.start()]
        topic = re.search(r"^user: .*?(\w+) account", history, re.MULTILINE)
        follow_up = found["q"].strip().rstrip("?")
        return f"{follow_up} of the {topic[1] if topic else 'same'} account?"


CONVERSATION_A = ["I want to ask about my savings account.", "What is the interest rate?"]
CONVERSATION_B = [
    "Let's talk about the joint account I opened last year.",
    "What is the interest rate?",
]


@pytest.mark.parametrize("chat_mode", ["condense_question", "condense_plus_context"])
def test_chat_engines_never_serve_one_conversation_to_another(
    make_engine: Callable[..., CacheEngine],
    embeddings: Any,
    settings: None,
    recorder: Recorder,
    chat_mode: str,
) -> None:
    """Before: turn 2 of B was served A's condensed question (0.985 similar, the history
    was in the embedded text) and, in condense_question mode, A's answer."""
    fake = Condenser()
    # A low threshold and a verifier that accepts all: only the scope keeps B from A's
    # entries ("... of the savings account?" and "... of the joint account?": 0.731).
    engine = engine_with(make_engine, embeddings, verifier=accept_all, threshold=0.7)
    Settings.llm = wrap(fake, engine)
    Settings.embed_model = MockEmbedding(embed_dim=8)  # every query retrieves both docs
    index = VectorStoreIndex.from_documents([Document(text=t) for t in ACCOUNTS])

    def converse(turns: Sequence[str]) -> list[str]:
        # ChatMemoryBuffer: the default Memory opens an aiosqlite store it never closes.
        memory = ChatMemoryBuffer.from_defaults(token_limit=4000)
        chat = index.as_chat_engine(chat_mode=chat_mode, memory=memory)
        return [str(chat.chat(turn)) for turn in turns]

    answers_a = converse(CONVERSATION_A)
    calls_a = fake.calls
    assert calls_a >= 3  # turn 1, the condensed question, turn 2
    served_before = len(recorder.hits())

    converse(CONVERSATION_B)
    assert len(recorder.hits()) == served_before  # nothing of A's was served to B
    assert fake.calls == 2 * calls_a

    # The same conversation again: every step is served from the cache.
    assert converse(CONVERSATION_A) == answers_a
    assert fake.calls == 2 * calls_a
    # A reworded follow-up in the same conversation is a semantic hit on the condense
    # step; its condensed question then hits the answer.
    reworded = converse([CONVERSATION_A[0], "And what's the interest rate?"])
    assert reworded == answers_a and fake.calls == 2 * calls_a


# -- 3. structured output with a text-completion program --------------------------------
class Person(BaseModel):
    name: str
    age: int


class JsonExtractor(FakeLLM):
    """Answers an extraction prompt with the JSON a real model would write."""

    def answer(self, question: str) -> str:
        found = re.search(r"([A-Z][a-z]+) is (\d+)", question)
        if found is None:
            return super().answer(question)
        return json.dumps({"name": found[1], "age": int(found[2])})


@pytest.mark.parametrize("var", ["text", "query_str"])
def test_structured_predict_keys_on_template_and_schema_not_the_parser(
    make_engine: Callable[..., CacheEngine],
    counting: CountingEmbeddings,
    var: str,
) -> None:
    """Before: LLMTextCompletionProgram wrote its output parser into the caller's
    template, so the key (and the embedded text) held the JSON schema: an exact repeat
    missed, and "Bob is 41" was served Person(Alice, 30) (0.994)."""
    template = PromptTemplate(f"Extract the person from this sentence: {{{var}}}")
    fake = JsonExtractor()
    llm = wrap(fake, engine_with(make_engine, counting, verifier=accept_all))
    alice = llm.structured_predict(Person, template, **{var: "Alice is 30"})
    assert alice == Person(name="Alice", age=30)
    assert template.output_parser is None  # the caller's template is untouched

    again = llm.structured_predict(Person, template, **{var: "Alice is 30"})
    assert again == alice and fake.calls == 1
    found = last_lookup()
    assert found is not None and found.layer == "exact"

    bob = llm.structured_predict(Person, template, **{var: "Bob is 41"})
    assert bob == Person(name="Bob", age=41) and fake.calls == 2
    if var == "query_str":  # a question variable: only it is embedded
        assert counting.texts == ["Alice is 30", "Bob is 41"]
    else:  # no question variable: exact-only
        assert counting.texts == []


def test_structured_requests_are_kind_structured(
    make_engine: Callable[..., CacheEngine], counting: CountingEmbeddings
) -> None:
    template = PromptTemplate("Extract the person: {query_str}")
    engine = engine_with(
        make_engine, counting, verifier=accept_all, exact_only_kinds=("structured",)
    )
    fake = JsonExtractor()
    llm = wrap(fake, engine)
    llm.structured_predict(Person, template, query_str="Alice is 30")
    llm.structured_predict(Person, template, query_str="Alice is 30 years old")
    assert fake.calls == 2 and counting.texts == []  # exact-only kind: no embedding
    llm.structured_predict(Person, template, query_str="Alice is 30")
    assert fake.calls == 2


# -- 4. different templates never share answers -----------------------------------------
@pytest.mark.parametrize("var", ["question", "query_str", "text"])
def test_different_templates_with_the_same_question_never_share(
    make_engine: Callable[..., CacheEngine], embeddings: Any, var: str
) -> None:
    """Before: PromptTemplate("... Answer in French ...") was served the English
    prompt's answer (0.888)."""
    intro = "You are a helpful support assistant for an online shop. Be concise and friendly."
    english = PromptTemplate(f"{intro} Answer the customer's question.\nQuestion: {{{var}}}")
    french = PromptTemplate(
        f"{intro} Answer in French. Answer the customer's question.\nQuestion: {{{var}}}"
    )
    fake = FakeLLM()
    llm = wrap(fake, engine_with(make_engine, embeddings, verifier=accept_all))
    in_english = llm.predict(english, **{var: "How do I reset my password?"})
    in_french = llm.predict(french, **{var: "How do I reset my password?"})
    assert fake.calls == 2 and in_french != in_english
    found = last_lookup()
    assert found is not None and not found.hit


def test_chat_templates_are_scope_too(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    def template(system: str) -> ChatPromptTemplate:
        return ChatPromptTemplate.from_messages(
            [
                ChatMessage(role=MessageRole.SYSTEM, content=system),
                ChatMessage(role=MessageRole.USER, content="{query_str}"),
            ]
        )

    fake = FakeLLM()
    llm = wrap(fake, engine_with(make_engine, embeddings, verifier=accept_all))
    llm.predict(template("Answer briefly."), query_str="How do I reset my password?")
    llm.predict(template("Answer in French."), query_str="How do I reset my password?")
    assert fake.calls == 2


# -- 5. FunctionAgent: a cached tool call is never replayed for other numbers ------------
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Calculator(FakeFunctionCallingLLM):
    """Computes "What is A times B plus C?" with the tools, one step at a time."""

    def _respond(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        question = next(
            (m.content or "" for m in reversed(messages) if m.role == MessageRole.USER), ""
        )
        a, b, c = (int(n) for n in re.findall(r"\d+", question)[:3])
        results = [m.content or "" for m in messages if m.role == MessageRole.TOOL]
        if len(results) >= 2 or not kwargs.get("tools"):
            text = f"The answer is {results[-1] if results else '?'}."
            return self._chat_response(
                messages, ChatMessage(role=MessageRole.ASSISTANT, content=text)
            )
        name, args = (
            ("multiply", {"a": a, "b": b})
            if not results
            else ("add", {"a": int(results[0]), "b": c})
        )
        call_id = f"call_{len(results)}_{name}"
        message = ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[ToolCallBlock(tool_call_id=call_id, tool_name=name, tool_kwargs=args)],
            additional_kwargs={
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                ]
            },
        )
        return self._chat_response(messages, message)


@pytest.mark.filterwarnings(WORKFLOWS_INSPECT)
@pytest.mark.parametrize("guard", ["verifier", "exact_only_tools"])
async def test_function_agent_never_replays_another_questions_tool_call(
    make_engine: Callable[..., CacheEngine],
    embeddings: Any,
    recorder: Recorder,
    guard: str,
) -> None:
    """Before: "2 times 3 plus 4" was served the cached multiply(3, 4) step (0.888)
    and answered 16."""
    options: dict[str, Any] = (
        {} if guard == "verifier" else {"verifier": accept_all, "exact_only_kinds": ("tools",)}
    )
    fake = Calculator()
    llm = wrap(fake, engine_with(make_engine, embeddings, **options))
    tools = [FunctionTool.from_defaults(fn=multiply), FunctionTool.from_defaults(fn=add)]

    async def run(question: str) -> str:
        agent = FunctionAgent(tools=tools, llm=llm, system_prompt="Use the tools.")
        return str(await agent.run(user_msg=question))

    assert "16" in await run("What is 3 times 4 plus 4?")
    assert fake.calls == 3
    assert "16" in await run("What is 3 times 4 plus 4?")
    assert fake.calls == 3  # the same question replays every step
    answer = await run("What is 2 times 3 plus 4?")
    assert "10" in answer and "16" not in answer
    assert fake.calls == 6
    refused = [e for e in recorder.misses() if e.outcome == "guarded"]
    if guard == "verifier":
        assert refused and refused[0].similarity is not None and refused[0].similarity > 0.8
    else:
        assert not refused  # exact-only: never even compared


# -- 6. hits that return the user's own object ------------------------------------------
def test_last_lookup_tells_a_structured_or_predict_hit(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    template = PromptTemplate("Extract the person: {query_str}")
    llm = wrap(JsonExtractor(), engine_with(make_engine, embeddings))
    llm.structured_predict(Person, template, query_str="Alice is 30")
    found = last_lookup()
    assert found is not None and not found.hit and found.outcome.value == "miss"
    person = llm.structured_predict(Person, template, query_str="Alice is 30")
    assert isinstance(person, Person)  # the user's own class: no room for a marker
    found = last_lookup()
    assert found is not None and found.hit and found.layer == "exact"

    text = llm.predict(SENTIMENT, question=REVIEW)
    found = last_lookup()
    assert found is not None and not found.hit
    assert llm.predict(SENTIMENT, question=REVIEW_PARAPHRASE) == text  # a bare str
    found = last_lookup()
    assert found is not None and found.hit and found.layer == "semantic"
    assert found.similarity is not None and found.question == REVIEW


async def test_last_lookup_after_async_structured_and_predict(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    template = PromptTemplate("Extract the person: {query_str}")
    llm = wrap(JsonExtractor(), engine_with(make_engine, embeddings))
    await llm.astructured_predict(Person, template, query_str="Bob is 41")
    await llm.astructured_predict(Person, template, query_str="Bob is 41")
    found = last_lookup()
    assert found is not None and found.hit and found.layer == "exact"
    await llm.apredict(SENTIMENT, question=REVIEW)
    await llm.apredict(SENTIMENT, question=REVIEW)
    found = last_lookup()
    assert found is not None and found.hit


# -- 7. tools are scope -----------------------------------------------------------------
def test_calls_that_differ_only_in_tools_never_share(
    make_engine: Callable[..., CacheEngine], embeddings: Any
) -> None:
    fake = FakeFunctionCallingLLM()
    llm = wrap(fake, engine_with(make_engine, embeddings, verifier=accept_all))
    assert isinstance(llm, SemanticCacheFunctionCallingLLM)
    weather = FunctionTool.from_defaults(fn=lambda city: city, name="weather", description="w")
    news = FunctionTool.from_defaults(fn=lambda city: city, name="news", description="n")
    first = llm.chat_with_tools([weather], user_msg="What about Oslo?", tool_required=True)
    other = llm.chat_with_tools([news], user_msg="What about Oslo?", tool_required=True)
    assert fake.calls == 2 and mark(other) is None
    assert llm.get_tool_calls_from_response(other)[0].tool_name == "news"
    # The raw chat endpoint too: only the tools differ.
    specs = [t.metadata.to_openai_tool() for t in (weather, news)]
    llm.chat(user("What about Oslo?"), tools=specs[:1])
    llm.chat(user("What about Oslo?"), tools=specs[1:])
    assert fake.calls == 4
    again = llm.chat_with_tools([weather], user_msg="What about Oslo?", tool_required=True)
    assert mark(again) is not None and again.message.blocks == first.message.blocks
