"""Prices: the user's entries, then the maintained genai-prices data; exact ids only."""

from __future__ import annotations

import sys

import pytest

from semcache_core.core.rules import Outcome
from semcache_core.pricing import Price, PriceTable, Usage, maintained_prices_available

M = 1_000_000


def test_the_prices_extra_is_installed_for_these_tests() -> None:
    assert maintained_prices_available()


@pytest.mark.parametrize(
    ("model", "usd_per_million_input"),
    [
        ("o3-mini", 1.10),  # not o3's 2.00: no prefix matching
        ("o3", 2.00),
        ("gemini-2.5-flash-lite", 0.10),  # not gemini-2.5-flash's 0.30
        ("gemini-2.5-flash", 0.30),
        ("gpt-4o-mini-2024-07-18", 0.15),  # a dated snapshot genai-prices resolves
        ("openai/gpt-4o", 2.50),  # a provider prefix genai-prices knows
        ("GPT-4o", 2.50),
    ],
)
def test_maintained_prices_match_exact_ids(model: str, usd_per_million_input: float) -> None:
    table = PriceTable()
    assert table.cost(Usage(M, 0, model)) == pytest.approx(usd_per_million_input)


def test_unknown_models_save_nothing() -> None:
    table = PriceTable({"m": (1.0, 1.0), "gpt": (9.0, 9.0)})
    assert table.cost(Usage(M, M, "my-own-model")) == 0.0  # "m" is not a prefix match
    assert table.cost(Usage(M, M, "gpt-5-imaginary-model")) == 0.0
    assert table.cost(Usage(M, M, "gpt-4o-foo")) == 0.0
    assert table.price("my-own-model") is None
    assert table.cost(Usage(M, M, None)) == 0.0
    assert table.cost(None) == 0.0


def test_user_prices_win_and_match_with_a_provider_prefix() -> None:
    table = PriceTable({"gpt-4o": (1.0, 2.0), "My-Model": Price(3.0, 4.0)})
    assert table.cost(Usage(M, M, "gpt-4o")) == 3.0
    assert table.cost(Usage(M, M, "acme/my-model")) == 7.0
    assert table.price("MY-MODEL") == Price(3.0, 4.0)
    assert table.cost(Usage(M, 0, "gpt-4o-mini")) == pytest.approx(0.15)  # still maintained


def test_defaults_false_uses_only_user_prices() -> None:
    table = PriceTable({"mine": (1.0, 1.0)}, defaults=False)
    assert table.cost(Usage(M, M, "gpt-4o")) == 0.0
    assert table.cost(Usage(M, M, "mine")) == 2.0


def test_without_the_extra_only_user_prices_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    from semcache_core import pricing

    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import genai_prices fails
    pricing._genai.cache_clear()
    try:
        assert not maintained_prices_available()
        table = PriceTable({"mine": (1.0, 1.0)})
        assert table.cost(Usage(M, M, "gpt-4o")) == 0.0
        assert table.price("gpt-4o") is None
        assert table.cost(Usage(M, M, "mine")) == 2.0
    finally:
        pricing._genai.cache_clear()


def test_bad_user_prices_raise() -> None:
    from semcache_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="must be Price"):
        PriceTable({"x": "cheap"})
    with pytest.raises(ConfigurationError, match="negative"):
        PriceTable({"x": (-1, 0)})


def test_price_table() -> None:
    table = PriceTable({"my-model": (1.0, 2.0)})
    assert table.cost(Usage(1_000_000, 1_000_000, "my-model")) == 3.0
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini") is not None
    assert table.price("openai/gpt-4o") == table.price("gpt-4o") is not None
    assert table.cost(Usage(100, 100, "unknown-model")) == 0.0
    assert table.cost(None) == 0.0
    assert Usage.from_json(b"{broken") is None
    assert Usage.from_json(Usage(1, 2, "m").to_json()) == Usage(1, 2, "m")
    assert Outcome.PROMOTED.value == "promoted"
