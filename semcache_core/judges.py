"""Judges: did a shadowed candidate answer agree with the fresh answer the LLM gave?

A verdict is what shadow mode learns from: the candidate the cache would have served,
the answer the application's LLM actually gave, and whether the two agree. Built in:

* `TextEqualityJudge`: equal after normalizing case, whitespace and punctuation. Right
  for deterministic or templated answers (classification, extraction, FAQ bots).
* `EmbeddingJudge`: the two answers' embeddings are at least ``min_similarity`` apart.
  Right for free text where wording varies from call to call.
* `CallableJudge`: any function ``(question, candidate, fresh) -> bool`` (sync or
  async), e.g. an LLM judge.

`as_judge` turns a name (``"text"``), an embedder or a callable into a judge.
"""

from __future__ import annotations

import inspect
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .embedding import Embedder, as_embedder
from .errors import ConfigurationError


@runtime_checkable
class Judge(Protocol):
    """Decides whether a candidate answer agrees with the fresh one."""

    name: str

    def agree(self, question: str, candidate: str, fresh: str) -> bool: ...

    async def aagree(self, question: str, candidate: str, fresh: str) -> bool: ...


_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Case-, width- and punctuation-insensitive form: ``"Yes."`` and ``" yes"`` match."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


class TextEqualityJudge:
    """Agree when the normalized texts are equal (see `normalize_text`)."""

    name = "text"

    def agree(self, question: str, candidate: str, fresh: str) -> bool:
        return normalize_text(candidate) == normalize_text(fresh)

    async def aagree(self, question: str, candidate: str, fresh: str) -> bool:
        return self.agree(question, candidate, fresh)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class EmbeddingJudge:
    """Agree when the answers' embeddings have cosine similarity >= ``min_similarity``.

    Args:
        embedder: any embedder `as_embedder` accepts (the cache's own is fine).
        min_similarity: the bar, in [0, 1]; 0.9 suits sentence-transformers models.
    """

    def __init__(self, embedder: Any, min_similarity: float = 0.9) -> None:
        if not 0.0 <= min_similarity <= 1.0:
            raise ConfigurationError(
                f"min_similarity must be in [0, 1], got {min_similarity}; e.g. 0.9"
            )
        self.embedder: Embedder = as_embedder(embedder)
        self.min_similarity = min_similarity
        self.name = f"embedding>={min_similarity:g}"

    def agree(self, question: str, candidate: str, fresh: str) -> bool:
        if normalize_text(candidate) == normalize_text(fresh):
            return True
        a, b = self.embedder.embed(candidate), self.embedder.embed(fresh)
        return _cosine(a, b) >= self.min_similarity

    async def aagree(self, question: str, candidate: str, fresh: str) -> bool:
        if normalize_text(candidate) == normalize_text(fresh):
            return True
        a = await self.embedder.aembed(candidate)
        b = await self.embedder.aembed(fresh)
        return _cosine(a, b) >= self.min_similarity


class CallableJudge:
    """A user function ``(question, candidate, fresh) -> bool``, sync or async.

    An async function works on the async path only; a sync one on both (it runs inline,
    so keep it fast or use the async path for an LLM judge).
    """

    def __init__(self, fn: Callable[[str, str, str], Any], name: str | None = None) -> None:
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.name: str = name or str(getattr(fn, "__name__", "callable"))

    def agree(self, question: str, candidate: str, fresh: str) -> bool:
        if self.is_async:
            raise ConfigurationError(
                f"judge {self.name!r} is async: use the async API (astore, ainvoke), or "
                "pass a sync function"
            )
        return bool(self.fn(question, candidate, fresh))

    async def aagree(self, question: str, candidate: str, fresh: str) -> bool:
        result = self.fn(question, candidate, fresh)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)


def as_judge(obj: Any) -> Judge:
    """A judge from a `Judge`, ``"text"``, or a callable ``(question, candidate, fresh)``.

    Raises:
        ConfigurationError: ``obj`` is none of those.
    """
    if obj is None or obj == "text":
        return TextEqualityJudge()
    if isinstance(obj, Judge):
        return obj
    if callable(obj):
        return CallableJudge(obj)
    raise ConfigurationError(
        f"cannot judge with {obj!r}: pass 'text', EmbeddingJudge(embedder), or a function "
        "(question, candidate, fresh) -> bool"
    )
