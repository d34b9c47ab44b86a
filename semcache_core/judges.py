"""Judges: did a shadowed candidate answer agree with the fresh answer the LLM gave?

A verdict is what shadow mode learns from: the candidate the cache would have served,
the answer the application's LLM actually gave, and whether the two agree. Built in:

* `TextEqualityJudge`: equal after normalizing case, whitespace and punctuation. Right
  for deterministic or templated answers (classification, extraction, FAQ bots).
* `EmbeddingJudge`: the two answers' embeddings have cosine similarity of at least
  ``min_similarity``. Right for free text where wording varies from call to call.
* `CallableJudge`: any function ``(question, candidate, fresh) -> bool`` (sync or
  async), e.g. an LLM judge.

`default_judge` picks the engine's judge when none is given: an answer-embedding judge
with a measured bar when the engine's embedder is one whose answer similarities were
measured (all-MiniLM-L6-v2), else the text judge. `measure_judge` measures a bar for any
embedder from pairs of your own model's answers. `as_judge` turns a name (``"text"``),
a judge or a callable into a judge.

**The MiniLM bar (0.80), measured.** On the rewording workload of the test suite (40
support intents, four phrasings of every right answer, as a chat model varies them at
temperature 0.7; ``benchmarks/judge_bar.py``, ``benchmarks/results/judge_bar.txt``):
two phrasings of the same answer have a median cosine of 0.908 (minimum 0.686, 5th
percentile 0.753); answers to different intents a median of 0.177 and a maximum of
0.789 (the refund-request vs refund-status answers). At 0.80, 92.5 % of the 240
same-intent pairs agree and none of the 12,480 cross-intent pairs (none of the 128
hard-negative pairs, whose questions are within 0.7 of each other). In the engine's flow
(a random phrasing cached, a random one fresh) that is 94.3 % of same-intent verdicts
agreed, against 24.9 % for the text judge and 66.7 % for ``EmbeddingJudge(minilm, 0.9)``;
0 % cross-intent for all three. The judge is still noisy, and says how noisy:
``false_disagreement`` (a right answer called wrong) is 7.5 % measured, 4.9 % at the
95 % lower bound, which is what calibration may credit; ``false_agreement`` (a wrong
answer called right) is 0 of 128 hard negatives, 2.3 % at the 95 % upper bound.
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


# all-MiniLM-L6-v2: the measured bar and noise rates (see the module docs).
MINILM_BAR = 0.80
MINILM_FALSE_DISAGREEMENT = 0.049  # 95 % lower bound of 18 / 240 same-intent pairs
MINILM_FALSE_AGREEMENT = 0.023  # 95 % upper bound of 0 / 128 hard-negative pairs
_MEASURED: dict[str, tuple[float, float, float]] = {
    "all-minilm-l6-v2": (MINILM_BAR, MINILM_FALSE_DISAGREEMENT, MINILM_FALSE_AGREEMENT),
}


class EmbeddingJudge:
    """Agree when the answers' embeddings have cosine similarity >= ``min_similarity``.

    Args:
        embedder: any embedder `as_embedder` accepts (the cache's own is fine).
        min_similarity: the bar, in [0, 1]. For all-MiniLM-L6-v2, `MINILM_BAR` (0.80)
            is measured (module docs); for another model use `measure_judge`.
        false_disagreement: a lower bound on how often this judge calls a right answer
            wrong, which calibration may credit (0: none, the strict bound).
        false_agreement: an upper bound on how often it calls a wrong answer right,
            which calibration allows for.

    Raises:
        ConfigurationError: a value is out of range.

    Example:
        >>> judge = EmbeddingJudge(minilm(), MINILM_BAR)
        >>> judge.agree("q", "Refunds take 30 days.", "Refunds are processed within 30 days.")
        True
    """

    def __init__(
        self,
        embedder: Any,
        min_similarity: float = MINILM_BAR,
        *,
        false_disagreement: float = 0.0,
        false_agreement: float = 0.0,
    ) -> None:
        if not 0.0 <= min_similarity <= 1.0:
            raise ConfigurationError(
                f"min_similarity must be in [0, 1], got {min_similarity}; e.g. {MINILM_BAR}"
            )
        for label, rate in (
            ("false_disagreement", false_disagreement),
            ("false_agreement", false_agreement),
        ):
            if not 0.0 <= rate < 0.5:
                raise ConfigurationError(
                    f"{label} must be in [0, 0.5), got {rate}; measure it with measure_judge"
                )
        self.embedder: Embedder = as_embedder(embedder)
        self.min_similarity = min_similarity
        self.false_disagreement = false_disagreement
        self.false_agreement = false_agreement
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


def measured_bar(model_id: str) -> tuple[float, float, float] | None:
    """The measured ``(bar, false_disagreement, false_agreement)`` of an embedding model."""
    normalized = model_id.casefold()
    for name, figures in _MEASURED.items():
        if name in normalized:
            return figures
    return None


def default_judge(embedder: Embedder | None) -> Judge:
    """The judge an engine uses when none is given.

    With an embedder whose answer similarities were measured (all-MiniLM-L6-v2): an
    `EmbeddingJudge` at the measured bar, declaring its measured noise. Otherwise the
    `TextEqualityJudge`: with no evidence of where another model's bar lies, a guessed
    bar could call wrong answers right (models differ widely in their cosine ranges);
    use `measure_judge` to get one from your own model's answers.
    """
    figures = measured_bar(embedder.model_id) if embedder is not None else None
    if embedder is None or figures is None:
        return TextEqualityJudge()
    bar, false_disagreement, false_agreement = figures
    return EmbeddingJudge(
        embedder,
        bar,
        false_disagreement=false_disagreement,
        false_agreement=false_agreement,
    )


def measure_judge(
    embedder: Any,
    same: Sequence[tuple[str, str]],
    different: Sequence[tuple[str, str]],
    *,
    confidence: float = 0.95,
) -> EmbeddingJudge:
    """An `EmbeddingJudge` whose bar and noise rates come from your own answers.

    The bar is just above the most similar pair of answers to different questions (so
    none of them agrees), rounded up to 0.01; the noise rates are one-sided confidence
    bounds on what the pairs show.

    Args:
        embedder: the embedder the judge will use.
        same: pairs of right answers to the same question (e.g. two samples of your LLM
            for one prompt).
        different: pairs of answers to different questions, the closer the better
            (e.g. the answers of questions your cache confuses).
        confidence: of the noise bounds.

    Raises:
        ConfigurationError: either list is empty, or no bar separates them at all.
    """
    from .calibration import clopper_pearson_lower, clopper_pearson_upper

    if not same or not different:
        raise ConfigurationError("measure_judge needs same-question and different-question pairs")
    inner = as_embedder(embedder)

    def cos(a: str, b: str) -> float:
        return _cosine(inner.embed(a), inner.embed(b))

    worst = max(cos(a, b) for a, b in different)
    bar = min(1.0, math.ceil((worst + 1e-9) * 100) / 100)
    missed = sum(normalize_text(a) != normalize_text(b) and cos(a, b) < bar for a, b in same)
    if missed == len(same):
        raise ConfigurationError(
            f"no bar separates the pairs: answers to different questions reach {worst:.3f}, "
            "above every same-question pair; use an LLM judge"
        )
    return EmbeddingJudge(
        inner,
        bar,
        false_disagreement=min(0.49, clopper_pearson_lower(missed, len(same), confidence)),
        false_agreement=min(0.49, clopper_pearson_upper(0, len(different), confidence)),
    )


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
