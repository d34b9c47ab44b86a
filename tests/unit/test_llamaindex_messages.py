"""Pure splitting of templated LlamaIndex calls: no Redis, no model."""

from __future__ import annotations

import contextvars

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine.condense_plus_context import DEFAULT_CONDENSE_PROMPT_TEMPLATE
from llama_index.core.prompts import PromptTemplate

from llamaindex_semcache.llm import DEFAULT_QUESTION_VARS, DEFAULT_TEMPLATES
from llamaindex_semcache.messages import (
    chat_parts,
    completion_parts,
    condensed_from,
    match_template,
    remember_condensed,
    template_call,
)

HISTORY = "user: I want to ask about my savings account.\nassistant: Sure."


def test_a_registered_template_is_split_into_its_variables() -> None:
    text = PromptTemplate(DEFAULT_CONDENSE_PROMPT_TEMPLATE).format(
        chat_history=HISTORY, question="What is the rate?"
    )
    call = match_template(text, DEFAULT_TEMPLATES, DEFAULT_QUESTION_VARS, ("chat_history",))
    assert call is not None and call.question == "What is the rate?"
    assert call.scope["vars"] == {"chat_history": HISTORY}
    assert call.conversation is not None
    parts = completion_parts(text, call)
    assert parts.question == "What is the rate?" and HISTORY in parts.context["template"]
    assert match_template("What is the rate?", DEFAULT_TEMPLATES, ("question",), ()) is None


def test_a_template_without_a_question_variable_has_no_question() -> None:
    template = PromptTemplate("Summarize: {ticket}")
    call = template_call(template, None, {"ticket": "late box"}, DEFAULT_QUESTION_VARS, ())
    assert call.question is None
    messages = [ChatMessage(role=MessageRole.USER, content="Summarize: late box")]
    assert chat_parts(messages, call).question is None
    assert completion_parts("Summarize: late box", call).question is None
    # Without a templated call the whole text is the question, as for any chat turn.
    assert chat_parts(messages).question == "Summarize: late box"


def test_the_template_text_and_other_variables_are_scope() -> None:
    a = template_call(
        PromptTemplate("Answer in {language}: {question}"),
        None,
        {"language": "French", "question": "Why?"},
        DEFAULT_QUESTION_VARS,
        (),
    )
    b = template_call(
        PromptTemplate("Answer briefly in {language}: {question}"),
        None,
        {"language": "French", "question": "Why?"},
        DEFAULT_QUESTION_VARS,
        (),
    )
    assert a.question == b.question == "Why?"
    assert a.scope != b.scope and a.scope["vars"] == {"language": "French"}


def test_a_condensed_question_remembers_its_conversation() -> None:
    call = template_call(
        PromptTemplate("{chat_history}\nFollow up: {question}"),
        None,
        {"chat_history": HISTORY, "question": "And the rate?"},
        DEFAULT_QUESTION_VARS,
        ("chat_history",),
    )

    def inside_one_task() -> None:
        remember_condensed(call, "What is the savings account's rate?")
        assert condensed_from("What is the savings account's rate?") == call.conversation
        assert condensed_from("Something else") is None

    contextvars.copy_context().run(inside_one_task)
    assert condensed_from("What is the savings account's rate?") is None  # per context
