"""Key derivation is pure: canonical JSON + sha256, never string concatenation."""

from __future__ import annotations

import pytest

from semcache_core.errors import ConfigurationError
from semcache_core.request import CacheRequest, canonical_json, digest, tenant_digest


def build(**kw: object) -> CacheRequest:
    args: dict[str, object] = {"tenant": "acme", "namespace": "ns", "prompt": "p"}
    args.update(kw)
    return CacheRequest.build(**args)  # type: ignore[arg-type]


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})


def test_no_concatenation_collisions() -> None:
    # RedisVL's hashify("ab" + "c") == hashify("a" + "bc"); ours must not collide.
    assert digest("ab", "c") != digest("a", "bc")
    a = build(tenant="ab", prompt="c")
    b = build(tenant="a", prompt="bc")
    assert a.exact_key != b.exact_key and a.partition != b.partition


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"tenant": "Acme"}, {"tenant": "acme"}),
        ({"tenant": " acme"}, {"tenant": "acme"}),
        ({"tenant": "a,b"}, {"tenant": "a"}),
        ({"scope": {"model": "a"}}, {"scope": {"model": "b"}}),
        ({"scope": {"temperature": 0}}, {"scope": {"temperature": 0.7}}),
        ({"prompt": "x"}, {"prompt": "x "}),
    ],
)
def test_every_part_changes_the_exact_key(
    left: dict[str, object], right: dict[str, object]
) -> None:
    assert build(**left).exact_key != build(**right).exact_key


def test_namespaces_differ_by_key_prefix() -> None:
    from semcache_core.storage.layout import Layout

    a, b = build(namespace="n1"), build(namespace="n2")
    assert a.exact_key == b.exact_key  # portable between namespaces (export / import)
    key_a = Layout("semcache", "n1").entry_key(a.tenant_token, a.exact_key, a.partition)
    key_b = Layout("semcache", "n2").entry_key(b.tenant_token, b.exact_key, b.partition)
    assert key_a != key_b


def test_question_does_not_change_exact_key_but_scope_changes_partition() -> None:
    assert build(question="q1").exact_key == build(question="q2").exact_key
    assert build(scope={"m": 1}).partition != build(scope={"m": 2}).partition
    assert build(tenant="x").partition != build(tenant="y").partition


def test_tokens_are_hex() -> None:
    req = build(tenant="evil}|@*-:,\"'\\ \x00é")
    for token in (req.tenant_token, req.scope_token, req.partition, req.exact_key):
        assert all(c in "0123456789abcdef" for c in token)
    assert req.tenant_token == tenant_digest(req.tenant)


def test_lone_surrogates_hash() -> None:
    assert build(prompt="\ud800").exact_key != build(prompt="\udc00").exact_key


def test_blank_question_disables_semantic_layer() -> None:
    assert build(question="   ").question is None
    assert build(question=None).question is None


@pytest.mark.parametrize("tenant", ["", None, 3])
def test_bad_tenant_rejected(tenant: object) -> None:
    with pytest.raises(ConfigurationError, match="tenant"):
        build(tenant=tenant)


def test_unserializable_scope_rejected() -> None:
    with pytest.raises(ConfigurationError, match="JSON"):
        build(scope={"x": object()})


@pytest.mark.parametrize(
    "prompt",
    [
        "plain",
        'a "quote" and \\ backslash',
        "snow ☃ and a lone \ud800",
        "\x00\x1f\n\t",
        "",
        "[{}]",
    ],
)
def test_the_exact_key_is_the_digest_it_always_was(prompt: str) -> None:
    """The hot path builds the exact key's JSON by hand: byte for byte the canonical JSON
    of ``[version, "exact", tenant, scope, prompt]``, so stored entries keep their keys."""
    req = CacheRequest.build(tenant="acme", namespace="ns", prompt=prompt, scope={"m": 1})
    assert req.exact_key == digest("exact", req.tenant_token, req.scope_token, prompt)
    assert req.partition == digest("partition", req.tenant_token, req.scope_token)
    assert req.scope_token == digest("scope", {"m": 1})
    assert canonical_json({"b": [1.5, None], "a": "é"}) == '{"a":"é","b":[1.5,null]}'.encode()


@pytest.mark.parametrize(
    "scope",
    [{}, {"llm_string": "m", "context": {"messages": [{"a": "é\ud800", "b": [1.5, None]}]}}],
)
def test_the_scope_token_is_the_digest_it_always_was(scope: dict[str, object]) -> None:
    """`scope_digest` formats the outer list itself; the bytes hashed are unchanged."""
    req = CacheRequest.build(tenant="acme", namespace="ns", prompt="p", scope=scope)
    assert req.scope_token == digest("scope", scope)


def test_a_built_request_is_the_dataclass_it_claims_to_be() -> None:
    """`build` fills the instance without the frozen __init__: every field is set, it
    compares equal to one made the ordinary way, and it stays frozen."""
    import dataclasses

    req = build(question="q", scope={"m": 1}, tags=("a", "b", "a"), kind="chat")
    assert set(vars(req)) == {f.name for f in dataclasses.fields(CacheRequest)}
    same = CacheRequest(
        **{f.name: getattr(req, f.name) for f in dataclasses.fields(CacheRequest) if f.init}
    )
    assert same == req and dataclasses.replace(req) == req and req.tags == ("a", "b")
    assert req.vectors == {} and req.budget.last is None
    assert build().budget is not req.budget and build().vectors is not req.vectors
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.prompt = "other"  # type: ignore[misc]
