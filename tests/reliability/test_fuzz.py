"""Property-based fuzzing (hypothesis) of everything a user can hand the cache.

Tenant ids, tags, scopes, prompts and questions are drawn from all of Unicode, lone
surrogates, NUL and control characters included, mixed with RediSearch query syntax
(``*``, ``@x:{y}``, ``|``, ``-``, ``(``, ``\\``, ...); payloads are arbitrary bytes;
thresholds and TTLs are arbitrary floats. The properties: the user's call never raises,
no query-syntax (or any other) error is counted (``stats()["errors"]`` stays empty), an
entry is only ever served to its own tenant and scope (semantic layer included, with an
embedder that makes every question identical), and an invalid setting is rejected at
construction with a `ConfigurationError` naming the field.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_semcache import SemanticCache, tenant
from semcache_core import CacheEngine, ConfigurationError, Outcome
from semcache_core.config import MAX_TTL, CacheConfig
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import constant_embedder
from tests.reliability.conftest import report

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MORE = settings(FUZZ, max_examples=120)  # the cheap, central properties get more examples
SYNTAX = [
    "*",
    "@x:{y}",
    "|",
    "-",
    "(",
    ")",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "$",
    "~",
    "%",
    ":",
    ",",
    '"',
]
SYNTAX += ["@tenant:{*}", "-@scope:{a}", "a|b", "\\*", "(@x:[1 2])", "=>[KNN 1 @vector $vec]"]
SYNTAX += ["", " ", "\x00", "\n", "\t", "\x1b[0m", "\ud800", "\udfff", "é", "Ω", "\u200b"]

# Any code point, lone surrogates (category Cs) included.
chars = st.characters(exclude_categories=())
hostile = st.one_of(
    st.sampled_from(SYNTAX),
    st.text(chars, max_size=40),
    st.lists(st.sampled_from(SYNTAX), min_size=1, max_size=6).map("".join),
)
tenant_ids = hostile.filter(lambda s: s != "")
scopes = st.dictionaries(
    st.text(chars, max_size=8),
    st.one_of(st.text(chars, max_size=16), st.integers(), st.booleans(), st.none()),
    max_size=3,
)
ttls = st.one_of(st.none(), st.floats(min_value=1.0, max_value=10 * 365 * 86400.0))

# What the property tests above `test_fuzz_figures` did, for it to report and check.
_seen: dict[str, int] = {
    "examples": 0,
    "lookups": 0,
    "cross_serves": 0,
    "async_examples": 0,
    "invalidations": 0,
    "lc_calls": 0,
}


def _owner(tenant_id: str, scope: dict[str, Any]) -> bytes:
    ident = json.dumps([tenant_id, scope], sort_keys=True).encode("utf-8", "surrogatepass")
    return hashlib.sha256(ident).hexdigest().encode() + b"|"


@pytest.fixture(scope="module")
def engine(redis_url: str) -> Iterator[CacheEngine]:
    """One engine, threshold 0 and a constant embedder: every question is a perfect
    semantic match for every other, so only the tenant/scope pre-filter keeps entries
    apart."""
    made = CacheEngine(
        redis_url,
        embedder=constant_embedder(),
        namespace=f"fuzz{uuid.uuid4().hex[:8]}",
        threshold=0.0,
    )
    yield made
    made.drop_index()
    made.close()


@MORE
@given(
    tenant_id=tenant_ids,
    other=tenant_ids,
    prompt=hostile,
    question=st.one_of(st.none(), hostile),
    scope=scopes,
    other_scope=scopes,
    tags=st.lists(hostile, max_size=4),
    payload=st.binary(max_size=2048),
    ttl=ttls,
)
def test_engine_any_input_roundtrips_and_never_crosses_partitions(
    engine: CacheEngine,
    tenant_id: str,
    other: str,
    prompt: str,
    question: str | None,
    scope: dict[str, Any],
    other_scope: dict[str, Any],
    tags: list[str],
    payload: bytes,
    ttl: float | None,
) -> None:
    owned = _owner(tenant_id, scope) + payload
    request = engine.request(
        prompt, question=question, scope=scope, tenant=tenant_id, tags=tags, ttl=ttl
    )
    assert engine.store(request, owned)
    hit = engine.lookup(request)
    assert hit.outcome is Outcome.EXACT_HIT and hit.value == owned

    # Another tenant, or another scope, asking the very same thing: whatever it gets
    # (a miss, or its own earlier entry) was stored under its own tenant and scope.
    probes = [(other, scope), (tenant_id, other_scope), (other, other_scope)]
    for t, s in probes:
        if (t, s) == (tenant_id, scope):
            continue
        for q in (question, "anything at all"):
            result = engine.lookup(engine.request(prompt, question=q, scope=s, tenant=t))
            _seen["lookups"] += 1
            served_other = result.hit and not result.value.startswith(_owner(t, s))
            _seen["cross_serves"] += served_other
            assert not served_other, (t, s, result)
    assert engine.stats()["errors"] == {}
    _seen["examples"] += 1


@FUZZ
@given(
    tenant_id=tenant_ids,
    prompt=hostile,
    tags=st.lists(hostile, min_size=1, max_size=3),
    payload=st.binary(max_size=256),
)
def test_async_engine_any_input(
    engine: CacheEngine, tenant_id: str, prompt: str, tags: list[str], payload: bytes
) -> None:
    async def roundtrip() -> None:
        request = engine.request(prompt, tenant=tenant_id, tags=tags)
        assert await engine.astore(request, payload)
        hit = await engine.alookup(request)
        assert hit.outcome is Outcome.EXACT_HIT and hit.value == payload
        await engine.aclose()

    asyncio.run(roundtrip())
    assert engine.stats()["errors"] == {}
    _seen["async_examples"] += 1


@FUZZ
@given(tenant_id=tenant_ids, tags=st.lists(hostile, min_size=1, max_size=3))
def test_invalidation_with_hostile_tenant_and_tags(
    engine: CacheEngine, tenant_id: str, tags: list[str]
) -> None:
    doomed = f"doomed {uuid.uuid4()}".encode()
    request = engine.request(doomed.decode(), tenant=tenant_id, tags=tags)
    assert engine.store(request, doomed)
    assert engine.invalidate(tenant=tenant_id, tags=tags[:1]) >= 1
    # Gone: neither layer serves it (another entry of this tenant may still answer
    # semantically: every question is identical under the constant embedder).
    after = engine.lookup(request)
    assert after.outcome is not Outcome.EXACT_HIT and after.value != doomed
    assert engine.stats()["errors"] == {}
    _seen["invalidations"] += 1


class SurrogateSafeModel(FakeSupportChatModel):
    """FakeSupportChatModel's answer() encodes the question as strict UTF-8, so the fake
    LLM itself raises on a lone surrogate; this one answers anything (the cache is under
    test, not the fake)."""

    def answer(self, question: str) -> str:
        digest = hashlib.sha256(question.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return f"[{self.model_name}] answer {digest}"


@pytest.fixture(scope="module")
def lc_cache(redis_url: str) -> Iterator[SemanticCache]:
    cache = SemanticCache(
        redis_url=redis_url,
        embeddings=constant_embedder(),
        namespace=f"fuzzlc{uuid.uuid4().hex[:8]}",
        threshold=0.0,
    )
    yield cache
    cache.engine.drop_index()
    cache.engine.close()


# (tenant, model) -> every answer the model itself gave that tenant: anything served to a
# tenant must be one of these (threshold 0 serves any of them semantically).
_produced: dict[tuple[str, str], set[str]] = {}


def _ask(model: SurrogateSafeModel, tenant_id: str, prompt: str) -> Any:
    with tenant(tenant_id):
        message = model.invoke(prompt)
    given_to = _produced.setdefault((tenant_id, model.model_name), set())
    if message.response_metadata.get("semcache") is None:
        assert message.content == model.answer(prompt)  # the model answered
        given_to.add(str(message.content))
    else:
        assert message.content in given_to, "served another tenant's or model's answer"
    return message


@MORE
@given(
    tenant_id=tenant_ids,
    other=tenant_ids,
    prompt=hostile,
    model_name=st.sampled_from(["m-1", "m-2"]),
)
def test_langchain_any_prompt_and_tenant(
    lc_cache: SemanticCache, tenant_id: str, other: str, prompt: str, model_name: str
) -> None:
    model = SurrogateSafeModel(cache=lc_cache, model_name=model_name)
    _ask(model, tenant_id, prompt)
    again = _ask(model, tenant_id, prompt)
    assert again.response_metadata.get("semcache") is not None  # cached for this tenant
    _ask(model, other, prompt)
    assert lc_cache.engine.stats()["errors"] == {}
    _seen["lc_calls"] += 3


def test_one_megabyte_prompt_payload_and_tags(
    engine: CacheEngine, lc_cache: SemanticCache
) -> None:
    big = "\x00*@x:{y}|-(\\\ud800 " * (1_048_576 // 14)
    assert len(big) >= 1_000_000
    payload = bytes(range(256)) * 4096  # 1 MiB of every byte value
    request = engine.request(big, question=big, tenant=big[:1000], tags=[big[:5000]])
    assert engine.store(request, payload)
    hit = engine.lookup(request)
    assert hit.outcome is Outcome.EXACT_HIT and hit.value == payload
    model = SurrogateSafeModel(cache=lc_cache)
    with tenant("big"):
        model.invoke(big)
        again = model.invoke(big)
    assert again.response_metadata.get("semcache") is not None
    assert model.calls == 1
    assert engine.stats()["errors"] == {} and lc_cache.engine.stats()["errors"] == {}


def test_fuzz_figures() -> None:
    """Runs after the property tests above (pytest keeps file order; run the whole file):
    prints what they tried and checks it. Every example ran to its end (hypothesis runs
    ``max_examples`` of them when all pass), the cross-partition probes were made and
    none was served another partition's entry."""
    report(
        "fuzz",
        engine_examples=_seen["examples"],
        cross_partition_lookups=_seen["lookups"],
        cross_serves=_seen["cross_serves"],
        async_examples=_seen["async_examples"],
        invalidation_examples=_seen["invalidations"],
        langchain_calls=_seen["lc_calls"],
        max_examples=f"{MORE.max_examples} (engine, LangChain), {FUZZ.max_examples} (others)",
    )
    assert _seen["examples"] == MORE.max_examples, "run the whole file: the fuzz tests first"
    assert _seen["cross_serves"] == 0
    # Up to 3 probes x 2 questions per example (fewer when a probe is the example's own
    # partition): the probes did run.
    assert MORE.max_examples <= _seen["lookups"] <= 6 * MORE.max_examples
    assert _seen["async_examples"] == FUZZ.max_examples
    assert _seen["invalidations"] == FUZZ.max_examples
    assert _seen["lc_calls"] == 3 * MORE.max_examples


# -- configuration --------------------------------------------------------------------------------
CLOSED = "redis://127.0.0.1:1/0"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
any_float = st.floats(allow_nan=True, allow_infinity=True)


def _accepted(**kwargs: Any) -> bool:
    try:
        CacheEngine(CLOSED, validate=False, **kwargs).close()
    except ConfigurationError as exc:
        message = str(exc)
        assert message.startswith("invalid semcache configuration")
        assert next(iter(kwargs)) in message  # names the field
        return False
    return True


@FUZZ
@given(value=any_float)
def test_threshold_accepted_iff_in_unit_interval(value: float) -> None:
    for field in ("threshold", "shadow_floor"):
        assert _accepted(**{field: value}) == (0.0 <= value <= 1.0)
    # A promotion threshold below the (default) threshold is refused: a shadow tenant
    # would serve what a live one would not.
    default = CacheConfig().threshold
    assert _accepted(promotion_threshold=value) == (default <= value <= 1.0)


@FUZZ
@given(value=any_float)
def test_ttl_accepted_iff_finite_and_bounded(value: float) -> None:
    assert _accepted(ttl=value) == (math.isfinite(value) and 0.0 <= value <= MAX_TTL)


@FUZZ
@given(value=any_float)
def test_timeouts_accepted_iff_positive_and_bounded(value: float) -> None:
    for field in ("socket_timeout", "connect_timeout", "pool_timeout"):
        assert _accepted(**{field: value}) == (0.0 < value <= 60.0)


@FUZZ
@given(value=hostile)
def test_namespace_accepted_iff_a_safe_name(value: str) -> None:
    ok = bool(_NAME.match(value)) and not value.startswith("__")
    try:
        CacheEngine(CLOSED, validate=False, namespace=value).close()
        assert ok
    except ConfigurationError as exc:
        assert not ok
        assert "letters, digits" in str(exc)


@FUZZ
@given(value=st.one_of(hostile, st.integers(), st.none()))
def test_default_tenant_accepted_iff_non_empty_string(value: Any) -> None:
    ok = isinstance(value, str) and value != ""
    if value is None:
        return  # None means "not given": the default applies
    try:
        CacheEngine(CLOSED, validate=False, default_tenant=value).close()
        assert ok
    except ConfigurationError:
        assert not ok


def test_nan_and_negative_thresholds_named_in_message() -> None:
    for value in (math.nan, -0.5, 1.5):
        with pytest.raises(ConfigurationError, match="threshold"):
            SemanticCache(redis_url=CLOSED, threshold=value)
