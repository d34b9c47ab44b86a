"""Added latency when Redis is slow but alive: every reply held N ms by a proxy.

What one user call pays the cache (lookup, plus the store of the answer on a miss) while
each Redis reply is delayed ``--delay`` ms (default 80, under the default 100 ms
``socket_timeout``), on the sync and the async driver, for misses (a new question each
time: lookup + store) and hits (a question stored before the delay started). Nothing is
mocked: an embedded Redis 8 + RediSearch behind the reliability suite's TCP proxy
(`tests/reliability/proxy.py`, delay mode, in its own process), the engine through its
public API, a hashed embedder (no model time), the circuit breaker kept closed
(``breaker_failures=1000``) so that every call meets the slow Redis instead of being
bypassed (with the default breaker, three cut lookups open it).

    python benchmarks/deadline.py                       # this checkout
    python benchmarks/deadline.py --save results/deadline.txt --label after

Before/after: run it once with ``PYTHONPATH`` pointing at the old ``semcache_core``
first (the script and the proxy come from this checkout), once at this one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the proxy; semcache_core comes from PYTHONPATH if set

import semcache_core  # noqa: E402
from semcache_core import CacheEngine  # noqa: E402
from semcache_core.embedded import start_embedded_redis  # noqa: E402
from semcache_core.embedding import CallableEmbedder  # noqa: E402


class Proxy:
    """`tests.reliability.proxy` in a child process (as the reliability suite runs it)."""

    def __init__(self, upstream_port: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.proxy", str(upstream_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._out, self._in = self._proc.stdout, self._proc.stdin
        self.port = int(self._out.readline())

    def delay(self, seconds: float) -> None:
        self._in.write(f"delay {seconds * 1000:g}\n")
        self._in.flush()
        self._out.readline()

    def close(self) -> None:
        self._in.write("quit\n")
        self._in.flush()
        self._proc.wait(timeout=10)


def hashed_embedder(dims: int = 16) -> CallableEmbedder:
    def embed(text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8])
        return list(np.random.default_rng(seed).standard_normal(dims))

    return CallableEmbedder(embed, model_id=f"hashed-{dims}")


def engine_for(url: str, namespace: str) -> CacheEngine:
    return CacheEngine(
        url,
        embedder=hashed_embedder(),
        dims=16,
        namespace=namespace,
        breaker_failures=1000,  # never opens here: every call meets the slow Redis
        persist_stats=False,
    )


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {statistics.median(ms):6.1f} ms   max {max(ms):6.1f} ms   "
        f"(n={len(ms)}, min {min(ms):.1f})"
    )


def counts(values: list[str]) -> dict[str, int]:
    return {v: values.count(v) for v in sorted(set(values))}


def run_sync(engine: CacheEngine, proxy: Proxy, delay: float, n: int) -> dict[str, Any]:
    hits = [engine.request(f"sync stored question {i}?") for i in range(n)]
    for r in hits:
        engine.store(r, b"answer")
    assert all(engine.lookup(r).hit for r in hits)
    proxy.delay(delay)
    miss_t, hit_t, outcomes, hit_outcomes = [], [], [], []
    try:
        for i in range(n):
            request = engine.request(f"sync new question {i} {time.time_ns()}?")
            started = time.perf_counter()
            result = engine.lookup(request)
            engine.store(request, b"fresh answer")
            miss_t.append(time.perf_counter() - started)
            outcomes.append(result.outcome.value)
            started = time.perf_counter()
            hit_outcomes.append(engine.lookup(hits[i]).outcome.value)
            hit_t.append(time.perf_counter() - started)
    finally:
        proxy.delay(0)
    return {"miss": miss_t, "hit": hit_t, "outcomes": outcomes, "hit_outcomes": hit_outcomes}


async def run_async(engine: CacheEngine, proxy: Proxy, delay: float, n: int) -> dict[str, Any]:
    hits = [engine.request(f"async stored question {i}?") for i in range(n)]
    for r in hits:
        await engine.astore(r, b"answer")
    assert all([(await engine.alookup(r)).hit for r in hits])
    await asyncio.to_thread(proxy.delay, delay)
    miss_t, hit_t, outcomes, hit_outcomes = [], [], [], []
    try:
        for i in range(n):
            request = engine.request(f"async new question {i} {time.time_ns()}?")
            started = time.perf_counter()
            result = await engine.alookup(request)
            await engine.astore(request, b"fresh answer")
            miss_t.append(time.perf_counter() - started)
            outcomes.append(result.outcome.value)
            started = time.perf_counter()
            hit_outcomes.append((await engine.alookup(hits[i])).outcome.value)
            hit_t.append(time.perf_counter() - started)
    finally:
        await asyncio.to_thread(proxy.delay, 0)
    await engine.aclose()
    return {"miss": miss_t, "hit": hit_t, "outcomes": outcomes, "hit_outcomes": hit_outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--delay", type=float, default=80.0, help="ms added to each reply")
    parser.add_argument("-n", type=int, default=30, help="calls per case and driver")
    parser.add_argument("--label", default="", help="a name for this run (before/after)")
    parser.add_argument("--save", help="append the figures to this file (under benchmarks/)")
    args = parser.parse_args()
    delay = args.delay / 1000
    lines = [
        f"== {args.label or 'run'}: every Redis reply delayed {args.delay:g} ms; "
        f"semcache_core from {Path(semcache_core.__file__).parent}",
        f"command: {' '.join(sys.argv)}",
        "machine: {} cores, load average {:.1f} {:.1f} {:.1f} (other jobs share it)".format(
            os.cpu_count(), *os.getloadavg()
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_embedded_redis(Path(tmp) / "redis", reuse=False, stop_at_exit=True)
        proxy = Proxy(server.port)
        url = f"redis://127.0.0.1:{proxy.port}/0"
        try:
            engine = engine_for(url, "deadline-sync")
            lines.append(f"socket_timeout {engine.config.socket_timeout * 1000:g} ms")
            sync = run_sync(engine, proxy, delay, args.n)
            stats = engine.stats()
            engine.close()
            aengine = engine_for(url, "deadline-async")
            asy = asyncio.run(run_async(aengine, proxy, delay, args.n))
            astats = aengine.stats()
            aengine.close()
        finally:
            proxy.close()
            server.stop()
    for name, res, st in (("sync", sync, stats), ("async", asy, astats)):
        lines.append(f"{name:5} miss (lookup + store): {summary(res['miss'])}")
        lines.append(f"{name:5} hit  (lookup):         {summary(res['hit'])}")
        lines.append(
            f"{name:5} outcomes: misses {counts(res['outcomes'])}, hits "
            f"{counts(res['hit_outcomes'])}; stats errors {dict(st['errors'])}, "
            f"deadline {dict(st.get('deadline', {}))}"
        )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.save:
        target = Path(args.save)
        if not target.is_absolute():
            target = ROOT / "benchmarks" / target
        with target.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
