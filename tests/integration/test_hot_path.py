"""The hot path's shortcuts keep every rule: embedder calls counted (each request
embedded at most once, concurrent async lookups batched, none at construction), and the
memoized requests, decoded values and L1 copies never serve across tenants, models,
conversations or contexts, and stop serving when invalidated or expired.

A hashed embedder (identical texts, identical vectors) is enough: these tests are about
counts and isolation, not similarity. Speed is measured in benchmarks/hotpath.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration

from langchain_semcache import SemanticCache, cache_context, tenant
from semcache_core import CacheEngine, last_lookup
from semcache_core.core.read import share_decoded
from tests.conftest import hashed_embedder

LLM = "[('_type', 'fake-chat'), ('model_name', 'm-1'), ('temperature', 0.0)]"
OTHER_LLM = "[('_type', 'fake-chat'), ('model_name', 'm-2'), ('temperature', 0.0)]"


class Counting:
    """A LangChain-style embeddings over the hashed embedder, counting its calls; with
    ``aembed_many`` (semcache's batch protocol) for the micro-batcher."""

    def __init__(self, dims: int = 16, delay: float = 0.0) -> None:
        self.inner = hashed_embedder(dims)
        self.delay = delay  # seconds per call: a model's cost, never "at hand"
        self.model = f"counting-hashed-{dims}"
        self.texts: list[str] = []
        self.batches: list[list[str]] = []

    def embed_query(self, text: str) -> list[float]:
        self.texts.append(text)
        if self.delay:
            time.sleep(self.delay)
        return self.inner.embed(text)

    async def aembed_query(self, text: str) -> list[float]:
        self.texts.append(text)
        return self.inner.embed(text)

    async def aembed_many(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        return [self.inner.embed(t) for t in texts]


def serving_l1(engine: CacheEngine) -> CacheEngine:
    """The engine, once its L1 tier serves (its coherence subscription is up)."""
    assert engine._state.l1_tier() is not None and engine._state.l1_sub is not None
    assert engine._state.l1_sub.wait_connected(5.0)
    return engine


def written(engine: CacheEngine, write: Callable[[], Any]) -> None:
    """Run ``write`` (one store), then wait until this process's L1 has applied the drop
    its own write announced over pub/sub too, so it cannot drop a copy read after it
    (which would make the L1 hit counts below vary, never what is served)."""
    tier = engine._state.l1
    assert tier is not None
    before = tier.version
    write()
    deadline = time.monotonic() + 5.0
    while tier.version < before + 2 and time.monotonic() < deadline:
        time.sleep(0.005)  # the local drop, then the announced one


def chat(text: str, system: str | None = None) -> str:
    messages: list[Any] = [SystemMessage(content=system)] if system else []
    return dumps([*messages, HumanMessage(content=text)])


def answer(text: str) -> list[ChatGeneration]:
    message = AIMessage(
        content=text,
        usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        tool_calls=[{"name": "lookup", "args": {"q": text}, "id": "call-1"}],
    )
    return [ChatGeneration(message=message, generation_info={"finish_reason": "stop"})]


# -- the embedder -------------------------------------------------------------------------
def test_construction_never_calls_the_embedder(
    make_engine: Callable[..., CacheEngine],
) -> None:
    counting = Counting()
    cache = SemanticCache(engine=make_engine(embedder=counting))  # no dims: none probed
    assert counting.texts == [] and counting.batches == []
    assert cache.engine._dims is None


def test_a_miss_and_its_store_embed_once_through_langchain(
    make_engine: Callable[..., CacheEngine],
) -> None:
    counting = Counting()
    # No embedding LRU: only the request's own vector can spare the store an embedding.
    cache = SemanticCache(engine=make_engine(embedder=counting, embedding_cache_size=0))
    prompt = chat("How do I reset my password?")
    assert cache.lookup(prompt, LLM) is None
    cache.update(prompt, LLM, answer("Use the link."))
    assert counting.texts == ["How do I reset my password?"]
    hit = cache.lookup(prompt, LLM)  # exact: no embedding at all
    assert hit is not None and counting.texts == ["How do I reset my password?"]


def test_an_async_miss_and_its_store_embed_once(
    make_engine: Callable[..., CacheEngine],
) -> None:
    counting = Counting()
    cache = SemanticCache(engine=make_engine(embedder=counting, embedding_cache_size=0))
    prompt = chat("Where is my invoice?")

    async def go() -> None:
        assert await cache.alookup(prompt, LLM) is None
        await cache.aupdate(prompt, LLM, answer("In billing."))

    asyncio.run(go())
    # The micro-batcher (on by default) sent it as a one-text batch: one call in all.
    assert counting.batches == [["Where is my invoice?"]] and counting.texts == []


def test_the_engine_request_carries_its_vector_to_the_store(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # An embedder as slow as a model (1 ms a call): an exact hit never waits for it. (One
    # that answers within `embedding.FAST_EMBED_SECONDS` embeds before the exact read, so
    # both reads go in one round trip: tests/integration/test_read_script.py.)
    counting = Counting(delay=0.001)
    engine = make_engine(embedder=counting, embedding_cache_size=0)
    req = engine.request("What is the refund window?")
    assert not engine.lookup(req).hit
    assert engine.store(req, b"30 days")
    assert counting.texts == ["What is the refund window?"]
    # Another request for the same text is another request: embedded again.
    assert engine.lookup(engine.request("What is the refund window?")).hit  # exact
    assert engine.lookup(engine.request("What's the refund window?")).outcome.value == "miss"
    assert counting.texts == ["What is the refund window?", "What's the refund window?"]


def test_concurrent_async_lookups_share_embedder_calls_by_default(
    make_engine: Callable[..., CacheEngine],
) -> None:
    counting = Counting()
    engine = make_engine(embedder=counting, embedding_cache_size=0)
    questions = [f"Question number {i} about billing?" for i in range(12)]

    async def go() -> None:
        results = await asyncio.gather(*(engine.alookup(engine.request(q)) for q in questions))
        assert not any(r.hit for r in results)

    asyncio.run(go())
    sent = [t for batch in counting.batches for t in batch]
    assert sorted(sent) == sorted(questions) and counting.texts == []
    assert len(counting.batches) < len(questions)  # batched, not one call each


# -- memoized requests never cross a boundary ---------------------------------------------
def test_memoized_requests_keep_tenants_models_conversations_and_contexts_apart(
    make_engine: Callable[..., CacheEngine],
) -> None:
    cache = SemanticCache(engine=make_engine(embedder=Counting()))
    prompt = chat("What is our refund policy?")
    with tenant("acme"):
        assert cache.lookup(prompt, LLM) is None
        cache.update(prompt, LLM, answer("acme: 30 days"))
        hit = cache.lookup(prompt, LLM)
        assert hit is not None and hit[0].text == "acme: 30 days"
    with tenant("globex"):
        assert cache.lookup(prompt, LLM) is None  # the same prompt, another tenant
    assert cache.lookup(prompt, LLM) is None  # the default tenant
    with tenant("acme"):
        assert cache.lookup(prompt, OTHER_LLM) is None  # another model
        # Another conversation before the same question: exact and semantic both miss.
        assert cache.lookup(chat("What is our refund policy?", system="Be a pirate."), LLM) is None
        with cache_context(scope={"conversation": "c-2"}):
            assert cache.lookup(prompt, LLM) is None  # another context scope
        with cache_context(tags=["faq"]):  # tags label entries; they do not partition
            hit = cache.lookup(prompt, LLM)
            assert hit is not None and hit[0].text == "acme: 30 days"
    tenant_cache = SemanticCache(engine=cache.engine, tenant="initech")
    assert tenant_cache.lookup(prompt, LLM) is None  # an adapter fixed to another tenant
    with tenant("acme"):
        assert tenant_cache.lookup(prompt, LLM) is None  # its own tenant wins


def test_a_scope_changed_inside_the_same_context_object_is_not_reused(
    make_engine: Callable[..., CacheEngine],
) -> None:
    cache = SemanticCache(engine=make_engine())
    prompt = chat("Summarise ticket 7.")
    with cache_context(scope={"user": "u1"}):
        cache.update(prompt, LLM, answer("u1's summary"))
        assert cache.lookup(prompt, LLM) is not None
        with cache_context(scope={"user": "u2"}):  # nested: merged scope differs
            assert cache.lookup(prompt, LLM) is None
    with cache_context(scope={"user": "u1"}):  # an equal scope, a new context object
        hit = cache.lookup(prompt, LLM)
        assert hit is not None and hit[0].text == "u1's summary"


# -- decoded values and L1 ------------------------------------------------------------------
def test_served_generations_are_copies(make_engine: Callable[..., CacheEngine]) -> None:
    """Decoded values are shared by hits (L1, the decode memo): what one caller does to
    what it was served never reaches the next hit."""
    cache = SemanticCache(engine=serving_l1(make_engine(l1_maxsize=100)))
    prompt = chat("Look up order 42.")
    stored = answer("Order 42 shipped.")
    stored[0].message.response_metadata = {"token_usage": {"prompt_tokens": 3}}
    written(cache.engine, lambda: cache.update(prompt, LLM, stored))
    for _ in range(2):  # from Redis, then from L1
        served = cache.lookup(prompt, LLM)
        assert served is not None
        gen = served[0]
        assert isinstance(gen, ChatGeneration) and isinstance(gen.message, AIMessage)
        assert gen.message.content == "Order 42 shipped."
        assert gen.message.usage_metadata == {
            "input_tokens": 3,
            "output_tokens": 5,
            "total_tokens": 8,
        }
        assert gen.message.tool_calls[0]["args"] == {"q": "Order 42 shipped."}
        assert gen.generation_info == {"finish_reason": "stop"}
        assert gen.message.response_metadata["semcache"]["layer"] == "exact"
        assert gen.message.response_metadata["token_usage"] == {"prompt_tokens": 3}
        # Everything a caller can change in place, changed.
        gen.message.tool_calls[0]["args"]["q"] = "tampered"
        gen.message.tool_calls.append({"name": "x", "args": {}, "id": "2", "type": "tool_call"})
        assert gen.message.usage_metadata is not None
        gen.message.usage_metadata["total_cost"] = 0  # type: ignore[typeddict-unknown-key]
        gen.message.response_metadata["semcache"]["layer"] = "tampered"
        gen.message.response_metadata["token_usage"]["prompt_tokens"] = 0
        gen.message.tampered = True  # an extra attribute (messages allow them)
        assert gen.message.model_extra == {"tampered": True}
        gen.message.additional_kwargs["x"] = 1
        assert gen.generation_info is not None
        gen.generation_info["finish_reason"] = "tampered"
        gen.message = AIMessage(content="replaced")  # what LangChain does on a hit
    assert cache.lookup(prompt, LLM)[0].message.model_extra == {}  # type: ignore[index]
    assert cache.engine.stats(totals=False)["l1"]["hits"] == 2


def test_l1_decodes_an_entry_once_for_a_shared_decoder(
    make_engine: Callable[..., CacheEngine],
) -> None:
    calls: list[bytes] = []

    def decode(payload: bytes, codec: str) -> str:
        calls.append(payload)
        return payload.decode()

    shared = share_decoded(decode)

    def plain(payload: bytes, codec: str) -> str:  # not shared: decoded every hit
        calls.append(payload)
        return payload.decode()

    engine = serving_l1(make_engine(l1_maxsize=100))
    req = engine.request("What are the opening hours?", tenant="acme")
    written(engine, lambda: engine.store(req, b"9 to 5"))
    for _ in range(3):
        assert engine.lookup(req, decode=shared).value == "9 to 5"
    assert len(calls) == 1 and engine.stats(totals=False)["l1"]["hits"] == 2
    for _ in range(2):
        assert engine.lookup(req, decode=plain).value == "9 to 5"
    assert len(calls) == 3
    # Another tenant's request for the same text never sees acme's copy.
    other = engine.request("What are the opening hours?", tenant="globex")
    assert not engine.lookup(other, decode=shared).hit


def test_l1_decoded_copies_go_with_invalidation_and_overwrite(
    make_engine: Callable[..., CacheEngine],
) -> None:
    cache = SemanticCache(engine=serving_l1(make_engine(l1_maxsize=100)))
    prompt = chat("What is the SLA?")
    with tenant("acme"):
        cache.update(prompt, LLM, answer("99.9 %"))
        assert cache.lookup(prompt, LLM) is not None
        assert cache.lookup(prompt, LLM) is not None  # from L1, decoded
        cache.update(prompt, LLM, answer("99.99 %"))  # an overwrite drops the copy
        hit = cache.lookup(prompt, LLM)
        assert hit is not None and hit[0].text == "99.99 %"
    cache.engine.invalidate(tenant="acme")
    with tenant("acme"):
        assert cache.lookup(prompt, LLM) is None
        cache.update(prompt, LLM, answer("tagged"))
        assert cache.lookup(prompt, LLM) is not None
    with tenant("acme"), cache_context(tags=["sla"]):
        cache.update(prompt, LLM, answer("tagged"))
    with tenant("acme"):
        assert cache.lookup(prompt, LLM) is not None  # held in L1 again
    cache.engine.invalidate(tags=["sla"])
    with tenant("acme"):
        assert cache.lookup(prompt, LLM) is None


def test_l1_decoded_copies_expire_with_their_entry(
    make_engine: Callable[..., CacheEngine],
) -> None:
    now = [1_000_000.0]
    engine = serving_l1(make_engine(l1_maxsize=100, l1_ttl=600.0, clock=lambda: now[0]))
    cache = SemanticCache(engine=engine)
    prompt = chat("Is the office open today?")
    with cache_context(ttl=60):
        cache.update(prompt, LLM, answer("yes"))
    assert cache.lookup(prompt, LLM) is not None
    assert cache.lookup(prompt, LLM) is not None  # held, decoded
    now[0] += 61  # past the entry's TTL by the engine's clock (the L1 copy's is longer)
    assert cache.lookup(prompt, LLM) is None


# -- the L1 short path (`EngineState.l1_hit`) ---------------------------------------------
def _served_reads(raw: Any) -> int:
    """Exact reads Redis has answered (HMGET, or the one-trip script)."""
    stats = raw.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hmget", "evalsha"))


def _held_in_l1(engine: CacheEngine, text: str, tenant_id: str = "acme") -> Any:
    decode = share_decoded(lambda payload, codec: payload.decode())
    req = engine.request(text, tenant=tenant_id)
    written(engine, lambda: engine.store(req, b"9 to 5"))
    assert engine.lookup(req, decode=decode).value == "9 to 5"  # read, now held decoded
    return req, decode


def test_an_l1_hit_is_served_and_counted_on_the_short_path(
    make_engine: Callable[..., CacheEngine], raw_redis: Any
) -> None:
    engine = serving_l1(make_engine(l1_maxsize=100))
    req, decode = _held_in_l1(engine, "What are the opening hours?")
    before, reads = engine.stats(totals=False)["tenants"]["acme"], _served_reads(raw_redis)
    for _ in range(3):
        found = engine.lookup(req, decode=decode)
        assert found.value == "9 to 5" and found.outcome.value == "exact_hit"
        # The short path spends no Redis budget (the whole lookup leaves one behind).
        assert req.budget.last is None
    after = engine.stats(totals=False)["tenants"]["acme"]
    assert after["exact_hits"] - before["exact_hits"] == 3
    assert after["requests"] - before["requests"] == 3
    assert _served_reads(raw_redis) == reads
    assert last_lookup() is found  # remembered as every lookup is


async def test_an_async_l1_hit_takes_the_short_path_too(
    make_engine: Callable[..., CacheEngine],
) -> None:
    engine = serving_l1(make_engine(l1_maxsize=100))
    req, decode = _held_in_l1(engine, "What are the opening hours?")
    found = await engine.alookup(req, decode=decode)
    assert found.value == "9 to 5" and req.budget.last is None


def test_an_open_breaker_bypasses_the_l1_copy_as_before(
    make_engine: Callable[..., CacheEngine],
) -> None:
    engine = serving_l1(make_engine(l1_maxsize=100, breaker_failures=1, breaker_cooldown=60))
    req, decode = _held_in_l1(engine, "What are the opening hours?")
    engine._state.breaker.record_failure()
    found = engine.lookup(req, decode=decode)
    assert found.outcome.value == "bypass" and not found.hit


def test_a_tenant_without_the_exact_layer_is_not_served_from_l1(
    make_engine: Callable[..., CacheEngine],
) -> None:
    engine = serving_l1(make_engine(l1_maxsize=100))
    req, decode = _held_in_l1(engine, "What are the opening hours?")
    engine.set_policy("acme", exact=False)
    assert not engine.lookup(req, decode=decode).hit


def test_a_sliding_ttl_hit_on_an_l1_copy_still_slides_the_entry_in_redis(
    make_engine: Callable[..., CacheEngine], raw_redis: Any
) -> None:
    now = [1_000_000.0]
    engine = serving_l1(
        make_engine(l1_maxsize=100, ttl=1000.0, sliding_ttl=True, clock=lambda: now[0])
    )
    req, decode = _held_in_l1(engine, "What are the opening hours?")
    now[0] += 600
    assert engine.lookup(req, decode=decode).hit  # from L1: the whole lookup, which slides
    expires = raw_redis.hget(engine.key(req), "expires_at")
    assert float(expires) == now[0] + 1000.0
