"""The demo workload: shape of the data and determinism of the replayed stream."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import pytest

from semcache_demo.workload import INTENTS, WorkloadItem, answer_for, intent_of, replay

ALL_QUESTIONS = [q for intent in INTENTS for q in intent.questions]


def test_forty_intents_with_unique_snake_case_ids() -> None:
    assert len(INTENTS) == 40
    ids = [intent.id for intent in INTENTS]
    assert len(set(ids)) == len(ids)
    for intent_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", intent_id), intent_id


def test_each_intent_has_four_or_five_questions_and_an_answer() -> None:
    for intent in INTENTS:
        assert 4 <= len(intent.questions) <= 5, intent.id
        assert all(q.strip() == q and q for q in intent.questions), intent.id
        assert intent.answer.strip() == intent.answer
        sentences = re.split(r"(?<=[.!?])\s+", intent.answer)
        assert 2 <= len(sentences) <= 4, intent.id


def test_no_question_text_is_used_twice() -> None:
    duplicates = [q for q, n in Counter(ALL_QUESTIONS).items() if n > 1]
    assert duplicates == []
    # Not even up to case and surrounding punctuation: that would be an exact-cache hit
    # across intents.
    normalized = [q.lower().strip(" ?.!") for q in ALL_QUESTIONS]
    assert len(set(normalized)) == len(normalized)


def test_answers_are_distinct() -> None:
    answers = [intent.answer for intent in INTENTS]
    assert len(set(answers)) == len(answers)


def test_answer_for_and_intent_of_agree_with_the_data() -> None:
    for intent in INTENTS:
        for question in intent.questions:
            assert intent_of(question) == intent.id
            assert answer_for(question) == intent.answer


def test_unknown_questions_have_no_intent_or_answer() -> None:
    for text in ("", "What is the meaning of life?", "how do i reset my password?"):
        assert intent_of(text) is None
        assert answer_for(text) is None


def test_replay_contains_every_question_once() -> None:
    stream = replay(0)
    assert sorted(item.question for item in stream) == sorted(ALL_QUESTIONS)
    for item in stream:
        assert isinstance(item, WorkloadItem)
        assert intent_of(item.question) == item.intent_id


def test_replay_is_deterministic_per_seed() -> None:
    assert replay(0) == replay(0)
    assert replay(7, repeats=2) == replay(7, repeats=2)
    assert replay() == replay(0)
    assert replay(0) != replay(1)
    assert [i.question for i in replay(1)] != [i.question for i in replay(2)]


def test_replay_does_not_touch_global_random_state() -> None:
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    replay(3, repeats=2)
    assert random.random() == expected


def test_replay_asks_canonical_first_and_keeps_paraphrase_order() -> None:
    for seed in range(5):
        stream = replay(seed)
        first_asks = [item for item in stream if item.is_first_ask]
        assert len(first_asks) == len(INTENTS)
        by_intent: dict[str, list[str]] = {}
        for item in stream:
            by_intent.setdefault(item.intent_id, []).append(item.question)
        for intent in INTENTS:
            assert by_intent[intent.id] == list(intent.questions)
        for item in first_asks:
            assert item.question == next(i for i in INTENTS if i.id == item.intent_id).questions[0]


def test_replay_interleaves_intents() -> None:
    stream = replay(0)
    # Not grouped by intent: the intent changes far more often than 40 times.
    changes = sum(a.intent_id != b.intent_id for a, b in itertools.pairwise(stream))
    assert changes > 2 * len(INTENTS)
    # Paraphrases do not all wait until every canonical question has been asked.
    last_first_ask = max(n for n, item in enumerate(stream) if item.is_first_ask)
    first_paraphrase = min(n for n, item in enumerate(stream) if not item.is_first_ask)
    assert first_paraphrase < last_first_ask


def test_repeats_two_asks_each_question_twice() -> None:
    stream = replay(5, repeats=2)
    assert len(stream) == 2 * len(ALL_QUESTIONS)
    assert Counter(item.question for item in stream) == Counter(ALL_QUESTIONS * 2)
    # The second pass only repeats texts already asked: every one an exact-cache hit.
    first, second = stream[: len(ALL_QUESTIONS)], stream[len(ALL_QUESTIONS) :]
    assert sorted(i.question for i in first) == sorted(i.question for i in second)
    assert not any(item.is_first_ask for item in second)
    assert sum(item.is_first_ask for item in stream) == len(INTENTS)


def test_repeats_must_be_positive() -> None:
    with pytest.raises(ValueError):
        replay(0, repeats=0)
