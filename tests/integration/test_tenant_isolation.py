"""Zero cross-tenant serves across 1,200 hostile tenant ids, on every path a tenant id
reaches Redis: exact lookups, semantic lookups and invalidation.

Every tenant stores an answer to the same prompt and question (so all entries share one
vector: the nearest neighbour in the whole index is almost always another tenant's),
and its answer is its own id. Each tenant must get back exactly its own id; tenants
that never stored anything must miss.

The meta-tests switch the protection off (tenant ids reaching TAG fields and queries
raw, escaped or not, as a naive cache does) and show the harness then reports the leak
itself (other tenants' entries deleted by one tenant's invalidation), not merely some
error, so this test fails if the hashing is removed.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from semcache_core import CacheEngine, Outcome
from semcache_core import query as query_module
from semcache_core import request as request_module
from tests.conftest import constant_embedder
from tests.integration.drivers import Driver

SPECIALS = "{}|@*-:,\"'\\ ()[]<>~!$%^&=+;?/.#`"
HOSTILE = [
    "acme",
    "Acme",
    "ACME",
    " acme",
    "acme ",
    "a c m e",
    "acme,globex",
    "acme|globex",
    "acme}",
    "{acme",
    "@tenant:{acme}",
    "*",
    "-acme",
    "acme-",
    "a:b",
    "a\\b",
    "a\\",
    "'acme'",
    '"acme"',
    "acme\x00",
    "\x00",
    "\t",
    "\n",
    "acme\r\n",
    "\x1b[31m",
    "é",
    "e\u0301",
    "ＡＣＭＥ",
    "租户",
    "🙂",
    "\u200b",
    "a" * 300,
    "(acme)",
    "acme*",
    "%",
    "$vec",
    "~acme",
]


def tenant_ids(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = SPECIALS + "abcAB01 é租\x00\x01\x7f"
    ids = list(dict.fromkeys(HOSTILE))
    while len(ids) < n:
        size = rng.randint(1, 12)
        candidate = "".join(rng.choice(alphabet) for _ in range(size))
        if candidate not in ids:
            ids.append(candidate)
    return ids


@dataclass
class Report:
    cross_serves: list[tuple[str, str]] = field(default_factory=list)
    own_misses: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wrongly_invalidated: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.cross_serves or self.own_misses or self.errors or self.wrongly_invalidated
        )


def run_isolation(
    engine: CacheEngine,
    stored: list[str],
    absent: list[str],
    victims: list[str] | None = None,
) -> Report:
    report = Report()
    prompt, question = "What is your refund policy?", "What is your refund policy?"
    for t in stored:
        assert engine.store(engine.request(prompt, question=question, tenant=t), _payload(t))
    for t in stored:
        exact = engine.lookup(engine.request(prompt, question=question, tenant=t))
        semantic = engine.lookup(
            engine.request(f"paraphrase for {t!r}", question=question, tenant=t)
        )
        for result in (exact, semantic):
            if result.outcome is Outcome.ERROR:
                report.errors.append(t)
            elif not result.hit:
                report.own_misses.append(t)
            elif result.value != _payload(t):
                report.cross_serves.append((t, result.value.decode("utf-8", "surrogatepass")))
    for t in absent:
        for result in (
            engine.lookup(engine.request(prompt, question=question, tenant=t)),
            engine.lookup(engine.request("other", question=question, tenant=t)),
        ):
            if result.hit:
                report.cross_serves.append((t, result.value.decode("utf-8", "surrogatepass")))
            elif result.outcome is Outcome.ERROR:
                report.errors.append(t)
    # Invalidating one tenant removes exactly its entry.
    if victims is None:
        victims = stored[:: max(1, len(stored) // 60)]
    for t in victims:
        try:
            engine.invalidate(tenant=t)
        except Exception:
            report.errors.append(t)
    gone = set(victims)
    for t in stored:
        result = engine.lookup(engine.request(prompt, question=question, tenant=t))
        if t not in gone and result.outcome in (Outcome.ERROR, Outcome.BYPASS):
            report.errors.append(t)  # not a deletion: the lookup never got an answer
        elif t not in gone and not result.hit:
            report.wrongly_invalidated.append(t)
        if t in gone and result.hit:
            report.cross_serves.append((t, "survived its own invalidation"))
    return report


def _payload(t: str) -> bytes:
    return t.encode("utf-8", "surrogatepass")


def test_zero_cross_tenant_serves(make_engine: Callable[..., CacheEngine], driver: Driver) -> None:
    ids = tenant_ids(1500)
    stored, absent = ids[:1200], ids[1200:]
    engine = driver.make(make_engine, embedder=constant_embedder(), threshold=0.0)
    report = run_isolation(engine, stored, absent)
    assert report.clean, report
    assert engine.stats()["errors"] == {}


def _naive_tokens(monkeypatch: pytest.MonkeyPatch, *, escape: bool) -> None:
    """Make the cache do what a naive one does: raw tenant ids in TAG fields/queries."""

    def raw_build(**kw):  # type: ignore[no-untyped-def]
        req = original(**kw)
        token = req.tenant
        parts = {f.name: getattr(req, f.name) for f in dataclasses.fields(req) if f.init}
        return request_module.CacheRequest(
            **{**parts, "tenant_token": token, "partition": token + "|" + req.scope_token}
        )

    original = request_module.CacheRequest.build
    monkeypatch.setattr(request_module.CacheRequest, "build", staticmethod(raw_build))
    monkeypatch.setattr(request_module, "tenant_digest", lambda t: t)
    for module in ("_async.admin", "_sync.admin", "storage.layout"):
        monkeypatch.setattr(f"semcache_core.{module}.tenant_digest", lambda t: t)
    if not escape:
        monkeypatch.setattr(query_module, "escape_tag", lambda v: v)


# Tenants a TAG field cannot tell apart from "acme" (it trims whitespace and splits at
# ','): with raw ids, invalidating "acme" deletes their entries too.
NAIVE_LEAKS = {" acme", "acme ", "acme\r\n", "acme,globex"}


@pytest.mark.parametrize("escape", [False, True], ids=["unescaped", "escaped-but-raw"])
def test_harness_reports_the_leak_of_a_naive_cache(
    make_engine: Callable[..., CacheEngine],
    monkeypatch: pytest.MonkeyPatch,
    namespace: str,
    escape: bool,
) -> None:
    """The harness must catch a leak, not merely see some error: with raw ids (escaped
    or not), invalidating one tenant deletes other tenants' entries, and the report
    names exactly those tenants as wrongly invalidated. The same run on the real cache
    is clean. Escaping alone is not enough: that is why semcache hashes ids before they
    reach a TAG field. (The breaker is kept closed so that the query errors of unescaped
    ids do not turn lookups into bypasses, which the report counts as errors.)"""
    ids = tenant_ids(120)
    stored, absent = ids[:100], ids[100:]
    assert set(stored) >= NAIVE_LEAKS and "acme" in stored
    settings = {"embedder": constant_embedder(), "threshold": 0.0, "breaker_failures": 1000}
    protected = make_engine(namespace=namespace + "p", **settings)
    control = run_isolation(protected, stored, absent, victims=["acme"])
    assert control.clean, control

    _naive_tokens(monkeypatch, escape=escape)
    naive = make_engine(namespace=namespace + "n", **settings)
    report = run_isolation(naive, stored, absent, victims=["acme"])
    assert set(report.wrongly_invalidated) >= NAIVE_LEAKS, report
