"""Verifiers: may a semantic candidate be served for this request?

Every semantic candidate passes a verifier before it is served (DESIGN.md section 2). The
built-in `RuleVerifier` (`semcache_core.core.verify`) compares the two questions'
protected details, polarity, roles and wording, with no I/O. Any sync or async callable
``(query_question, candidate_question) -> bool | Verification`` can replace it: a
cross-encoder, an NLI model, an LLM judge. A verifier that raises refuses the candidate
(counted as an error): a fault never turns into a served answer.

`as_verifier` turns what the user passed (``None``, a strictness name, a callable) into
one `CandidateVerifier` with both a sync and an async method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .core.verify import STRICTNESS, RuleVerifier, Verification
from .errors import ConfigurationError

__all__ = ["CandidateVerifier", "RuleVerifier", "Verification", "as_verifier"]


def _as_verification(value: Any) -> Verification:
    if isinstance(value, Verification):
        return value
    return Verification(True) if value is True else Verification(False, "verifier")


class CandidateVerifier:
    """A verifier with a sync and an async face, whatever the user gave.

    Args:
        check: ``(query, candidate) -> bool | Verification``, sync or async.
        name: shown in logs and stats.
    """

    def __init__(self, check: Callable[[str, str], Any], name: str) -> None:
        self._check = check
        self.name = name
        self._is_async = inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(
            getattr(check, "__call__", None)  # noqa: B004 - a callable object's method
        )

    def __repr__(self) -> str:
        return f"CandidateVerifier({self.name})"

    @property
    def is_async(self) -> bool:
        return self._is_async

    def verify(self, query: str, candidate: str) -> Verification:
        """Sync check. An async verifier cannot run in a sync call: the engine refuses it
        at construction for sync use (see `as_verifier`), so this never blocks a loop."""
        if self._is_async:
            raise ConfigurationError(
                "this verifier is async; use the engine's async methods (alookup), or "
                "pass a sync verifier"
            )
        return _as_verification(self._check(query, candidate))

    async def averify(self, query: str, candidate: str) -> Verification:
        if self._is_async:
            return _as_verification(await self._check(query, candidate))
        return _as_verification(self._check(query, candidate))


def as_verifier(value: Any, strictness: str = "balanced") -> CandidateVerifier:
    """The engine's verifier from its ``verifier=`` argument.

    Args:
        value: ``None`` (the built-in rules at ``strictness``), one of ``"lenient"``,
            ``"balanced"``, ``"strict"``, a `RuleVerifier`, or any callable
            ``(query_question, candidate_question) -> bool | Verification`` (sync or
            async).
        strictness: the built-in's strictness when ``value`` is ``None``.

    Raises:
        ConfigurationError: anything else.
    """
    if value is None:
        value = strictness
    if isinstance(value, str):
        if value not in STRICTNESS:
            raise ConfigurationError(
                f"verifier must be one of {', '.join(STRICTNESS)} or a callable "
                f"(query, candidate) -> bool, got {value!r}"
            )
        rules = RuleVerifier(value)  # type: ignore[arg-type]
        return CandidateVerifier(rules, repr(rules))
    if isinstance(value, CandidateVerifier):
        return value
    if callable(value):
        return CandidateVerifier(value, getattr(value, "__name__", type(value).__name__))
    raise ConfigurationError(
        f"verifier must be a strictness name or a callable (query, candidate) -> bool, "
        f"got {type(value).__name__}"
    )
