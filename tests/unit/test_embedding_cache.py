"""CachedEmbedder: an LRU of recent vectors in front of the model."""

from __future__ import annotations

from semcache_core.embedding import CachedEmbedder, CallableEmbedder


def _counting() -> tuple[CallableEmbedder, list[str]]:
    seen: list[str] = []

    def embed(text: str) -> list[float]:
        seen.append(text)
        return [float(len(text)), float(sum(map(ord, text)))]

    return CallableEmbedder(embed, model_id="counting"), seen


def test_the_least_recently_used_vector_goes_first() -> None:
    inner, seen = _counting()
    cache = CachedEmbedder(inner, maxsize=2)
    first = cache.embed("a")
    cache.embed("bb")
    assert cache.embed("a") == first  # a hit: a is now the more recent
    cache.embed("ccc")  # evicts bb
    cache.embed("a")
    cache.embed("bb")  # computed again
    assert seen == ["a", "bb", "ccc", "bb"]
    assert cache.calls == 4


async def test_async_shares_the_cache_and_size_zero_caches_nothing() -> None:
    inner, seen = _counting()
    cache = CachedEmbedder(inner, maxsize=4)
    cache.embed("q")
    assert await cache.aembed("q") == inner.embed("q")
    assert seen == ["q", "q"]  # the second is the direct inner call above
    off = CachedEmbedder(inner, maxsize=0)
    off.embed("q")
    off.embed("q")
    assert off.calls == 2
