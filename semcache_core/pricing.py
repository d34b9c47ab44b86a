"""What a cached answer saved: tokens from the answer's own usage, times a price table.

A served hit saves the tokens the cached call used (input plus output) and what they
cost at the model's prices. Unknown usage saves zero tokens; an unknown model saves
zero dollars. Nothing is ever estimated.

The built-in table is small and illustrative (list prices in USD per million tokens as
published by the providers in 2025); pass your own with ``CacheEngine(prices={...})``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


@dataclass(frozen=True)
class Usage:
    """Token usage of one LLM call, as the provider reported it.

    Attributes:
        input_tokens: prompt tokens.
        output_tokens: completion tokens.
        model: the model that answered (for the price lookup); ``None`` if unknown.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> str:
        return json.dumps(
            {"in": self.input_tokens, "out": self.output_tokens, "model": self.model},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: Any) -> Usage | None:
        """Parse the stored form; ``None`` (not a guess) when absent or malformed."""
        if raw in (None, b"", ""):
            return None
        try:
            data = json.loads(raw)
            model = data.get("model")
            return cls(
                input_tokens=max(0, int(data.get("in") or 0)),
                output_tokens=max(0, int(data.get("out") or 0)),
                model=str(model) if model else None,
            )
        except (ValueError, TypeError, AttributeError):
            return None


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "o3": Price(2.00, 8.00),
    "o4-mini": Price(1.10, 4.40),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
    "gemini-2.0-flash": Price(0.10, 0.40),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-pro": Price(1.25, 10.00),
    "mistral-large": Price(2.00, 6.00),
    "mistral-small": Price(0.10, 0.30),
}


class PriceTable:
    """Model name -> `Price`, with the longest-prefix match for dated or suffixed names
    (``gpt-4o-mini-2024-07-18`` prices as ``gpt-4o-mini``).

    Args:
        prices: entries that override or extend the defaults; a value may be a `Price`
            or a pair ``(input_per_million, output_per_million)``.
        defaults: start from `DEFAULT_PRICES` (``False``: only ``prices``).
    """

    def __init__(self, prices: Mapping[str, Any] | None = None, *, defaults: bool = True) -> None:
        table: dict[str, Price] = dict(DEFAULT_PRICES) if defaults else {}
        for name, value in (prices or {}).items():
            table[name.lower()] = _as_price(name, value)
        self._table = table
        self._by_length = sorted(table, key=len, reverse=True)

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" -> "gpt-4o"
        exact = self._table.get(name)
        if exact is not None:
            return exact
        for known in self._by_length:
            if name.startswith(known):
                return self._table[known]
        return None

    def cost(self, usage: Usage | None) -> float:
        """USD the call cost; 0.0 when usage or the model's price is unknown."""
        if usage is None:
            return 0.0
        price = self.price(usage.model)
        return price.cost(usage.input_tokens, usage.output_tokens) if price else 0.0


def _as_price(name: str, value: Any) -> Price:
    if isinstance(value, Price):
        return value
    try:
        inp, out = value
        price = Price(float(inp), float(out))
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"price for {name!r} must be Price(...) or (input_usd, output_usd) per million "
            f"tokens, got {value!r}"
        ) from None
    if price.input_per_million < 0 or price.output_per_million < 0:
        raise ConfigurationError(f"price for {name!r} must not be negative")
    return price
