"""Every value that reaches a RediSearch query is escaped."""

from __future__ import annotations

import re

import pytest

from semcache_core import query

HOSTILE = [
    "a}b",
    "a|b",
    "@x:{y}",
    "*",
    "-a",
    "(a)",
    "a\\b",
    "a b",
    'a"b',
    "a'b",
    "a,b",
    "é",
    "\x00",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_escape_tag_leaves_no_bare_syntax(value: str) -> None:
    escaped = query.escape_tag(value)
    # every non-word character is preceded by a backslash
    assert re.fullmatch(r"(?:\w|\\.)*", escaped, flags=re.ASCII | re.DOTALL)


def test_tag_clauses() -> None:
    assert query.tag_any("tags", ["a", "b"]) == "@tags:{a | b}"
    assert query.tag_all("tags", ["a", "b"]) == "@tags:{a} @tags:{b}"
    assert query.tag_any("t", ["a|b"]) == "@t:{a\\|b}"
    with pytest.raises(ValueError):
        query.tag_any("t", [])


def test_knn_prefilter_shape() -> None:
    q = query.knn("@partition:{abc}", k=1, vector_param="vec", hybrid_policy=None)
    assert q == "(@partition:{abc})=>[KNN 1 @vector $vec AS distance]"
    q = query.knn("@p:{a}", k=3, vector_param="v", hybrid_policy="batches")
    assert "HYBRID_POLICY BATCHES" in q


def test_numeric_and_conjunction() -> None:
    assert query.numeric_below("created_at", 10.0) == "@created_at:[-inf (10.0]"
    assert query.conjunction([]) == "*"
    assert query.conjunction(["@a:{x}", "@b:{y}"]) == "(@a:{x}) (@b:{y})"
