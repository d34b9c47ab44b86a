"""The built-in verifier, with no Redis: what it refuses, what it lets through.

The refusals are the wrong serves a new user met with similarity alone (each scored 0.98
or more with all-MiniLM-L6-v2); the passes are rewordings that must still hit.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semcache_core.core import verify as verify_module
from semcache_core.core.verify import RuleVerifier, features, verify
from semcache_core.errors import ConfigurationError
from semcache_core.verifiers import as_verifier

REFUSED = [
    # (query, candidate, the rule that must refuse)
    ("Extract the appointment date: 04/05/2024",
     "Extract the appointment date: 05/04/2024", "date"),
    ("What is the status of invoice #7781?", "What is the status of invoice #7787?", "num"),
    ("Call me back on 555 0142", "Call me back on 555 0124", "num"),
    ("Rename user_id to account_id in the orders table",
     "Rename account_id to user_id in the orders table", "order"),
    ("Cheapest flights from Boston to Denver", "Cheapest flights from Denver to Boston", "order"),
    ("Patient age 67, is the dose safe?", "Patient age 76, is the dose safe?", "num"),
    ("Summarize the contract ending in 2025", "Summarize the contract ending in 2026", "num"),
    ("Extract name and age as JSON: Alice is 31 years old",
     "Extract name and age as JSON: Alice is 30 years old", "num"),
    ("Is ibuprofen safe during pregnancy?", "Is ibuprofen not safe during pregnancy?", "negation"),
    ("Should I take the pill before the meal?",
     "Should I take the pill after the meal?", "antonym"),
    ("Alice owes Bob $50. Who pays?", "Bob owes Alice $50. Who pays?", "order"),
    ("Translate 'good morning' into French", "Translate 'good morning' into German", "lang"),
    ("How do I cancel my Premium subscription?", "How do I pause my Premium subscription?",
     "substitution"),
    ("Convert 5 km to miles", "Convert 5 miles to km", "order"),
    ("Sort the list ascending", "Sort the list descending", "antonym"),
    ("What's the weather in Paris tomorrow?", "What's the weather in Paris today?", "when"),
    ("Send the report to bob@example.com", "Send the report to rob@example.com", "email"),
    ('Find rows where status = "active"', 'Find rows where status = "archived"', "quote"),
    ("Compute 2 times 3 plus 4", "Compute 3 times 4", "num"),
    ("Quelle heure est-il à Paris ?", "What time is it in Paris?", "language"),
    ("What is 2 times 3 plus 4?", "What is 2 times (3 plus 4)?", "sym"),
    ("Includes a 2-year warranty.", "Includes a 3-year warranty.", "num"),
    ("Includes a two-year warranty.", "Includes a three-year warranty.", "num"),
    ("What is 72 °F in Celsius?", "What is 72 °C in Fahrenheit?", "order"),
    ("Take one tablet every 6 hours", "Take two tablets every 6 hours", "num"),
    ("Convert this function to JavaScript", "Convert this function to TypeScript", "lang"),
    ("Say 'see you soon' in Korean", "Say 'see you later' in Korean", "quote"),
    ("Move the meeting from Monday to Friday", "Move the meeting from Friday to Monday",
     "order"),
    ("Flights to Paris on Monday, returning Friday",
     "Flights to Paris on Friday, returning Monday", "order"),
    # One word moved across a clause, a negation moved: not a moved clause.
    ("How do I transfer my subscription to my husband's account?",
     "How do I transfer my husband's subscription to my account?", "order"),
    ("Please don't cancel my subscription, I just want to change my plan.",
     "Please cancel my subscription, I don't want to change my plan.", "order"),
    # Who speaks: an insult to the reader is not self-deprecation.
    ("Label this comment as toxic or non-toxic: You're an idiot if you think this works.",
     "Label this comment as toxic or non-toxic: I'd be an idiot to think this works.",
     "person"),
    # "I" and "you" trade roles: who tells whom, who helps whom.
    ("Should I tell you my password?", "Should you tell me your password?", "person"),
    ("Are you able to help me?", "Can I help you?", "person"),
    ("Can I call you tomorrow?", "Can you call me tomorrow?", "person"),
    # "in 30 days" and "30 days ago" point opposite ways in time.
    ("Translate into French: The invoice is due in 30 days.",
     "Translate into French: The invoice was due 30 days ago.", "antonym"),
]  # fmt: skip

AGREED = [
    ("How do I reset my password?", "how can i reset my password"),
    ("How do I cancel my subscription?", "How can I cancel my subscription, please?"),
    ("Why can't I log in to the app?", "why cannot i log in to the app"),
    ("What is the capital of France?", "What's the capital of France?"),
    ("How long does shipping to Europe take?", "How many days does delivery to Europe take?"),
    ("Book a table for 4 at 7pm", "Book a table for four at 7 pm"),
    ("Summarize in 3 bullet points", "Summarize in three bullet points"),
    ("Meeting on 9 September at 10:00", "Meeting on 9 Sep at 10am"),
    ("How do I delete my account?", "How do I remove my account?"),
    ("Je voudrais réserver une table", "je voudrais reserver une table"),
    ("Is there a student discount?", "Do you offer discounts for students?"),
    # Numbers, units and symbols written another way.
    ("Includes a 2-year warranty.", "Includes a two-year warranty."),
    ("What is 72 °F in Celsius?", "72 fahrenheit to celsius"),
    ("Amount charged: £18.40", "Amount charged £18.40 (GBP)"),
    ("Call me back at (415) 555-0192 after 5.", "call me back after 5 at 415-555-0192"),
    ("Take 1 tablet every 6 hours as needed.", "One tablet every six hours when needed."),
    ("Can I pause my membership for a month?", "Can I pause my membership for 1 month?"),
    ("How many ounces are in 2 cups?", "2 cups = how many oz?"),
    ("Translate this product description into Japanese: Thank you for your order.",
     "Translate this product description -> Japanese: Thank you for your order."),
    # A quoted phrase said unquoted; a language named by its usual short name.
    ("Translate into Korean: See you next week.", "Translate 'See you next week' into Korean."),
    ("Can you convert that to JavaScript?", "can you convert that to js"),
    # A clause moved as a whole; a heavily reworded paraphrase adds and drops direction
    # words ("most recent" for "last").
    ("Book a hotel in Rome for 3 nights starting June 12",
     "Book a hotel in Rome starting June 12 for 3 nights"),
    ("I was charged twice for my last order.",
     "You billed me two times for my most recent order."),
    # "you" asked to do something, or the generic "you", next to an "I".
    ("Where is my order #A58213?", "can u check the status of order A58213"),
    ("Do you offer free shipping on orders over $50?",
     "Is shipping free if I spend more than fifty dollars?"),
    ("Do you need to rinse basmati rice before cooking it?",
     "do i need to rinse basmati rice before cooking it"),
    # Both persons, each keeping its role (a passive is not compared).
    ("Can you help me reset my password?", "I need you to help me reset my password"),
    ("Can you email me the receipt?", "I want you to email me the receipt"),
    ("Why did you block me?", "Why have I been blocked by you?"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "candidate", "rule"), REFUSED)
def test_near_misses_are_refused_by_the_rule_that_sees_them(
    query: str, candidate: str, rule: str
) -> None:
    result = verify(query, candidate)
    assert not result.ok, (query, candidate)
    assert result.reason == rule
    assert not verify(candidate, query).ok  # symmetric


@pytest.mark.parametrize(("query", "candidate"), AGREED)
def test_rewordings_pass(query: str, candidate: str) -> None:
    result = verify(query, candidate)
    assert result.ok, result.reason
    assert verify(candidate, query).ok


def test_identical_texts_always_pass() -> None:
    assert verify("  Extract  the date: 04/05/2024 ", "Extract the date: 04/05/2024").ok


def test_strictness_orders_the_rules() -> None:
    swap = ("Flights from Boston to Denver", "Flights from Denver to Boston")
    assert verify(*swap, "lenient").ok  # lenient checks details and polarity only
    assert not verify(*swap, "balanced").ok
    reworded = ("How do I reset my password?", "What is the way to reset my password?")
    assert verify(*reworded, "balanced").ok
    assert verify("How do I quickly reset my password?", reworded[0], "strict").ok  # a filler
    assert not verify("How do I reset my email password?", reworded[0], "strict").ok
    with pytest.raises(ValueError, match="strictness"):
        RuleVerifier("loose")  # type: ignore[arg-type]


def test_long_shared_context_with_another_question_is_refused() -> None:
    context = " ".join(
        f"Clause {i}: the tenant pays the rent on the first day." for i in range(40)
    )
    a = f"Context: {context}\nQuestion: Who pays for repairs to the boiler?"
    b = f"Context: {context}\nQuestion: When does the lease end and can it be renewed?"
    assert not verify(a, b).ok


def test_features_normalise_numbers_times_and_currency() -> None:
    f = features("Book 3 rooms at 3pm for $50 on 9 Sep")
    g = features("book three rooms at 15:00 for 50 dollars on 9 September")
    assert f.protected == g.protected


def test_as_verifier_accepts_callables_and_names() -> None:
    assert as_verifier(None).verify("a b", "a b").ok
    assert not as_verifier(lambda q, c: False).verify("x", "y").ok
    assert as_verifier("strict").name == "RuleVerifier('strict')"
    with pytest.raises(ConfigurationError, match="verifier"):
        as_verifier("bogus")
    with pytest.raises(ConfigurationError, match="verifier"):
        as_verifier(42)


async def test_async_verifiers_are_awaited_and_refused_in_sync_calls() -> None:
    async def agree(query: str, candidate: str) -> bool:
        return query.lower() == candidate.lower()

    checker = as_verifier(agree)
    assert (await checker.averify("Hi", "hi")).ok
    assert not (await checker.averify("Hi", "ho")).ok
    with pytest.raises(ConfigurationError, match="async"):
        checker.verify("Hi", "hi")


def test_first_as_an_adverb_is_not_a_number() -> None:
    assert "num:1" not in features("Should I get a court order first?").protected
    assert "num:1" not in features("Clear the balance first and then invest.").protected
    assert features("Only in the first 48 hours").protected["num:1"] == 1


# -- the comparison's counting helpers against the Counter algebra they replace --------
_WORDS = st.lists(st.sampled_from(["a", "b", "c", "pay", "paid", "refund", "refnd"]), max_size=12)


@given(_WORDS, _WORDS)
def test_overlap_is_the_size_of_the_multiset_intersection(a: list[str], b: list[str]) -> None:
    assert verify_module._overlap(Counter(a), Counter(b)) == sum(
        (Counter(a) & Counter(b)).values()
    )


@given(_WORDS, _WORDS)
def test_differing_is_each_sides_surplus_in_first_seen_order(a: list[str], b: list[str]) -> None:
    ta, tb = verify_module._trim(tuple(a), tuple(b))
    ca, cb = Counter(ta), Counter(tb)
    expected_a = list((ca - (ca & cb)).elements())
    expected_b = list((cb - (ca & cb)).elements())
    for x in list(expected_a):  # a typo is not a differing word
        match = next((y for y in expected_b if verify_module._typo(x, y)), None)
        if match is not None:
            expected_a.remove(x)
            expected_b.remove(match)
    assert verify_module._differing(tuple(a), tuple(b)) == (expected_a, expected_b)


def test_a_candidates_counts_are_kept_with_its_parts() -> None:
    f = features("Transfer 20 dollars from checking to savings")
    assert f.sequence_counts is f.sequence_counts  # counted once
    assert f.sequence_counts == Counter(f.sequence) and f.raw_counts == Counter(f.raw)
