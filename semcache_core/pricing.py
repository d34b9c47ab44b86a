"""What a cached answer saved: tokens from the answer's own usage, times a price table.

A served hit saves the tokens the cached call used (input plus output) and what they
cost at the model's prices. Unknown usage saves zero tokens; an unknown model saves
zero dollars. Nothing is ever estimated.

Prices come from the maintained `genai-prices` package (the ``prices`` extra) and from
the user's own entries (``CacheEngine(prices={...})``), which win. Model ids match
exactly (see `PriceTable`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

logger = logging.getLogger(__name__)


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
        except (ValueError, TypeError, AttributeError, OverflowError):
            return None  # {"in": 1e999} included: a malformed usage is no usage


class PriceTable:
    """Model id -> what a call cost: the user's own prices first, then `genai-prices`_.

    Matching is exact, never by prefix (``o3-mini`` is not ``o3``):

    * a user entry matches its model id, case-insensitively, with or without a
      ``provider/`` prefix (``openai/my-model`` matches an entry ``"my-model"``);
    * otherwise, when the ``prices`` extra is installed (``pip install
      "semcache[prices]"``), the maintained `genai-prices`_ data resolves the id as it
      documents it: exact ids and its listed aliases, dated snapshots it knows
      (``gpt-4o-mini-2024-07-18``), and a ``provider/`` prefix naming one of its
      providers (``openai/gpt-4o``). Tiered prices use the call's real token counts.

    An id neither knows saves zero dollars: never a guess. Without the extra only the
    user's prices apply.

    .. _genai-prices: https://pypi.org/project/genai-prices/

    Args:
        prices: the user's entries, which win over genai-prices; a value may be a
            `Price` or a pair ``(input_per_million, output_per_million)``.
        defaults: fall back to genai-prices when installed (``False``: only ``prices``).

    Example:
        >>> PriceTable({"my-model": (1.0, 2.0)}).cost(Usage(1_000_000, 0, "my-model"))
        1.0
    """

    def __init__(self, prices: Mapping[str, Any] | None = None, *, defaults: bool = True) -> None:
        table: dict[str, Price] = {}
        for name, value in (prices or {}).items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"a price needs a model id (a string), got {name!r}")
            table[name.lower()] = _as_price(name, value)
        self._table = table
        self._defaults = defaults

    def price(self, model: str | None) -> Price | None:
        """The user's price for ``model``, else genai-prices' base rate; None if unknown."""
        own = self._own(model)
        if own is not None or not model or not self._defaults:
            return own
        one_in = _maintained_cost(model, 1_000_000, 0)
        one_out = _maintained_cost(model, 0, 1_000_000)
        if one_in is None or one_out is None:
            return None
        return Price(one_in, one_out)

    def cost(self, usage: Usage | None) -> float:
        """USD the call cost; 0.0 when usage or the model's price is unknown."""
        if usage is None or not usage.model:
            return 0.0
        own = self._own(usage.model)
        if own is not None:
            return own.cost(usage.input_tokens, usage.output_tokens)
        if not self._defaults:
            return 0.0
        found = _maintained_cost(usage.model, usage.input_tokens, usage.output_tokens)
        return found if found is not None else 0.0

    def _own(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.lower()
        found = self._table.get(name)
        if found is None and "/" in name:
            found = self._table.get(name.rsplit("/", 1)[-1])
        return found


class SavingsMemo:
    """What a hit on an entry saves, by the entry's stored usage: tokens and USD, or
    ``None`` for a malformed usage. Hits repeat the same usage, so each is priced once,
    for an hour at most (the maintained prices change by date, rarely)."""

    MAX = 4096
    SECONDS = 3600.0

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self._items: dict[Any, tuple[int, float] | None] = {}
        self._since = time.monotonic()

    def saved(self, usage_json: Any) -> tuple[int, float] | None:
        now = time.monotonic()
        if now - self._since > self.SECONDS or len(self._items) >= self.MAX:
            self._items = {}
            self._since = now
        items = self._items
        try:
            return items[usage_json]
        except KeyError:
            pass
        usage = Usage.from_json(usage_json)
        known = None if usage is None else (usage.total_tokens, self.prices.cost(usage))
        items[usage_json] = known
        return known


def maintained_prices_available() -> bool:
    """True when the ``prices`` extra (genai-prices) is installed."""
    return _genai() is not None


@functools.lru_cache(maxsize=1)
def _genai() -> Any:
    try:
        import genai_prices
    except ImportError:
        return None
    return genai_prices


def _maintained_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """genai-prices' price of one call, or None when the extra is missing or the id unknown."""
    genai = _genai()
    if genai is None:
        return None
    usage = genai.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    ref = model.lower()
    attempts: list[tuple[str, str | None]] = [(ref, None)]
    if "/" in ref:  # "openai/gpt-4o": a provider prefix genai-prices knows
        provider, _, rest = ref.partition("/")
        attempts.insert(0, (rest, provider))
    for model_ref, provider_id in attempts:
        try:
            result = genai.calc_price(usage, model_ref, provider_id=provider_id)
        except LookupError:
            continue
        except Exception:  # bad data in a price snapshot must never break a hit
            logger.warning("genai-prices could not price a model", exc_info=True)
            return None
        return float(result.total_price)
    return None


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
