"""Lookup latency and throughput: one Redis node against a Redis Cluster, in one run.

Both topologies run side by side on this machine: a private single Redis (as in
`speed.py`) and an embedded loopback cluster of 3 masters and 3 replicas
(`semcache_core.start_embedded_cluster`). Each gets a `CacheEngine` with the same settings
and the same entries, spread over 50 tenants; on the cluster the namespace is
``cluster_buckets`` (16) bucket indexes under hash tags, so a lookup asks one shard.

The embedder is a lookup table of precomputed all-MiniLM-L6-v2 vectors of QQP questions
(`qqp.py`; a `CallableEmbedder`), so what is timed is the engine and its Redis path, not a
model. Without the QQP data file the vectors are `common.hash_vector` random unit vectors,
and the output says so.

Query kinds: an *exact* hit asks a stored prompt; a *semantic* hit asks a held-out QQP
duplicate of a stored question (cosine 0.93-0.995, accepted by the default verifier, so a
miss there is the search's, not the verifier's), in the stored entry's tenant; *recall*
is the share of semantic queries served that very entry. A *miss* asks a held-out
question whose nearest stored neighbour is far below the threshold. Latency is measured
in round-robin rounds (single, cluster; then cluster, single; ...) so background load
hits both alike; tables show the median over rounds of each percentile.

Throughput: 1, 2 and 4 client processes (multiprocessing, spawn), each with its own
engines on both URLs, run a shuffled mix of the three kinds (a third each) for a fixed
time; the topologies take turns per process count and round. Reported: total lookups/s,
each process's p50 (median over processes), and the CPU the clients and the Redis
servers used meanwhile (cores busy), which says who the bottleneck was.

Usage:
    python benchmarks/cluster.py                 # 10,000 entries (~5 min on 2 cores)
    python benchmarks/cluster.py --quick         # smoke run (~1 min)
    python benchmarks/cluster.py --entries 50000 --rounds 5 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common
import numpy as np
import qqp
import redis
from redis.cluster import RedisCluster
from rich.console import Console
from rich.table import Table

# Measure this checkout's engine (the commit `common.machine()` reports): a script run
# puts only benchmarks/ on the path, so an installed semcache elsewhere would win.
ROOT = Path(__file__).resolve().parent.parent
if sys.path[1:2] != [str(ROOT)]:
    sys.path.insert(1, str(ROOT))

import semcache_core  # noqa: E402
from semcache_core import (  # noqa: E402
    CacheEngine,
    CallableEmbedder,
    LookupResult,
    start_embedded_cluster,
)
from semcache_core.core import verify as verify_mod  # noqa: E402
from semcache_core.core.result import Outcome  # noqa: E402

NAMESPACE = "clusterbench"
SCOPE = {"model": "bench-model-1", "temperature": 0.0}
SEM_LOW, SEM_HIGH = 0.93, 0.995
TOPOLOGIES = ("single", "cluster")
ANSWER_TAIL = " The cached model answer continues here with detail." * 8  # ~400 chars
KINDS = ("exact", "semantic", "miss")


# -- workload -----------------------------------------------------------------------------
@dataclass
class Item:
    """One lookup: ``expect`` is the stored entry that should answer (-1: a miss)."""

    kind: str
    tenant: str
    prompt: str
    question: str
    expect: int


@dataclass
class Workload:
    """Stored entries (text, tenant) and query pools; ``vectors`` maps text -> row."""

    texts: list[str]
    tenants: list[str]
    semantic: list[Item]
    miss: list[Item]
    table: dict[str, np.ndarray]
    source: str
    semantic_sims: list[float] = field(default_factory=list)
    miss_max_sim: float = 0.0

    def exact_item(self, i: int) -> Item:
        return Item("exact", self.tenants[i], prompt_of(self.texts[i]), self.texts[i], i)

    def vector(self, text: str) -> np.ndarray:
        found = self.table.get(text)
        return common.hash_vector(text) if found is None else found


def prompt_of(question: str) -> str:
    return f"user: {question}"


def tenant_of(i: int, tenants: int) -> str:
    return f"tenant-{i % tenants:03d}"


def qqp_workload(entries: int, tenants: int, pool: int, seed: int) -> Workload:
    """Stored QQP questions; semantic queries are held-out duplicates of stored ones."""
    data = qqp.load()
    store = qqp.VectorStore(data, "plain")
    store.ensure(range(len(data.texts)))
    plain = store.matrix
    rng = random.Random(seed)
    sims = {
        (p.a, p.b): float(plain[p.a] @ plain[p.b])
        for p in data.pairs
        if p.label == 1 and p.a != p.b
    }
    candidates = [ab for ab, s in sims.items() if SEM_LOW <= s <= SEM_HIGH]
    rng.shuffle(candidates)
    used: set[int] = set()
    chosen: list[tuple[int, int]] = []
    for a, b in candidates:
        if len(chosen) >= pool:
            break
        if a in used or b in used:
            continue
        # Only pairs the default verifier accepts: then recall measures the search.
        if not verify_mod.verify(data.texts[b], data.texts[a]).ok:
            continue
        chosen.append((a, b))
        used.update((a, b))
    rest = [i for i in range(len(data.texts)) if i not in used]
    rng.shuffle(rest)
    miss_pool, others = rest[: 4 * pool], rest[4 * pool :]
    stored = ([a for a, _ in chosen] + others)[:entries]
    texts = [data.texts[i] for i in stored]
    tenant_ids = [tenant_of(i, tenants) for i in range(len(stored))]
    stored_vecs = plain[stored]
    best = np.empty(len(miss_pool), dtype=np.float32)
    for start in range(0, len(miss_pool), 256):
        best[start : start + 256] = (plain[miss_pool[start : start + 256]] @ stored_vecs.T).max(
            axis=1
        )
    order = np.argsort(best)[:pool]
    table = {data.texts[i]: plain[i] for i in stored}
    semantic = []
    for j, (_a, b) in enumerate(chosen[: len(stored)]):
        text = data.texts[b]
        table[text] = plain[b]
        semantic.append(Item("semantic", tenant_ids[j], prompt_of(text), text, j))
    miss = []
    for k, o in enumerate(order):
        text = data.texts[miss_pool[o]]
        table[text] = plain[miss_pool[o]]
        miss.append(Item("miss", tenant_of(k, tenants), prompt_of(text), text, -1))
    return Workload(
        texts,
        tenant_ids,
        semantic,
        miss,
        table,
        source=f"QQP ({qqp.data_path()}), precomputed all-MiniLM-L6-v2 vectors",
        semantic_sims=[sims[ab] for ab in chosen[: len(semantic)]],
        miss_max_sim=float(best[order].max()) if len(order) else 0.0,
    )


def synthetic_workload(entries: int, tenants: int, pool: int, seed: int) -> Workload:
    """Random unit vectors (no QQP data): a semantic query is the stored question with a
    "?" (the verifier agrees) whose vector is the stored one turned by a cosine drawn in
    0.93-0.99; a miss is a fresh random vector (cosine ~0 to everything)."""
    rng = np.random.default_rng(seed)
    texts = [f"synthetic question number {i}" for i in range(entries)]
    tenant_ids = [tenant_of(i, tenants) for i in range(entries)]
    table = {t: common.hash_vector(t) for t in texts}
    semantic, sims = [], []
    for j in rng.choice(entries, size=min(pool, entries), replace=False):
        base = table[texts[j]]
        noise = np.asarray(rng.standard_normal(size=len(base)), dtype=np.float32)
        noise -= (noise @ base) * base
        noise /= np.linalg.norm(noise)
        cos = float(rng.uniform(0.93, 0.99))
        vec = (cos * base + np.sqrt(1 - cos * cos) * noise).astype(np.float32)
        text = f"{texts[j]}?"
        table[text] = vec
        semantic.append(Item("semantic", tenant_ids[j], prompt_of(text), text, int(j)))
        sims.append(cos)
    miss = []
    for k in range(pool):
        text = f"unrelated synthetic question {k}"
        miss.append(Item("miss", tenant_of(k, tenants), prompt_of(text), text, -1))
    return Workload(
        texts,
        tenant_ids,
        semantic,
        miss,
        table,
        source="SYNTHETIC: common.hash_vector random unit vectors, not QQP",
        semantic_sims=sims,
    )


# -- engines ------------------------------------------------------------------------------
def make_engine(url: str, table: dict[str, np.ndarray], socket_timeout: float) -> CacheEngine:
    """An engine whose embedder is the lookup table (unknown text: a hash vector)."""

    def embed(text: str) -> np.ndarray:
        found = table.get(text)
        return common.hash_vector(text) if found is None else found

    return CacheEngine(
        url,
        embedder=CallableEmbedder(embed, model_id="table:all-MiniLM-L6-v2"),
        namespace=NAMESPACE,
        dims=384,
        socket_timeout=socket_timeout,
    )


def ask(engine: CacheEngine, item: Item) -> LookupResult:
    request = engine.request(item.prompt, question=item.question, scope=SCOPE, tenant=item.tenant)
    return engine.lookup(request)


def answered(result: LookupResult) -> int:
    """The stored entry id in a served payload (``#<id>|...``), -1 when none."""
    if not result.hit or not isinstance(result.value, bytes):
        return -1
    head = result.value.split(b"|", 1)[0]
    return int(head[1:]) if head.startswith(b"#") else -1


def payload(i: int) -> bytes:
    return f"#{i}| Answer {i}.{ANSWER_TAIL}".encode()


def populate(engine: CacheEngine, wl: Workload, concurrency: int = 16) -> float:
    """Store every entry through the engine's async store, 16 at a time; seconds taken."""

    async def store(i: int) -> None:
        text = wl.texts[i]
        request = engine.request(prompt_of(text), question=text, scope=SCOPE, tenant=wl.tenants[i])
        if not await engine.astore(request, payload(i)):
            raise RuntimeError(f"entry {i} was not stored ({engine.cluster=})")

    async def run() -> None:
        # The first entry alone: concurrent first calls in a loop each make a cluster
        # client (AsyncStores.get awaits initialize()) and all but the last are closed
        # under them ("Connection lost"), which then opens the breaker.
        await store(0)
        it = iter(range(1, len(wl.texts)))

        async def worker() -> None:
            for i in it:
                await store(i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    t = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t


# -- latency ------------------------------------------------------------------------------
@dataclass
class Latency:
    p50: float
    p99: float
    mean: float
    hit_rate: float
    right: float  # share served the intended entry (exact and semantic)
    wrong: int  # served another entry
    errors: int  # ERROR or BYPASS outcomes (served as misses)
    n: int
    commands: dict[str, float] = field(default_factory=dict)  # per lookup, all masters


# Connection set-up and our own INFO calls: not part of a lookup.
_NOT_LOOKUP = {"info", "hello", "client|setinfo", "replconf", "ping", "cluster|slots"}


def command_calls(urls: Sequence[str]) -> Counter[str]:
    """Commands served so far by these servers (INFO commandstats, summed)."""
    total: Counter[str] = Counter()
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            for name, stat in client.info("commandstats").items():
                total[name.removeprefix("cmdstat_")] += int(stat["calls"])
        finally:
            client.close()
    return total


def time_items(engine: CacheEngine, items: Sequence[Item], nodes: Sequence[str]) -> Latency:
    before = command_calls(nodes)
    lat = np.empty(len(items))
    hits = right = wrong = errors = 0
    for k, item in enumerate(items):
        t = time.perf_counter()
        result = ask(engine, item)
        lat[k] = time.perf_counter() - t
        got = answered(result)
        hits += result.hit
        right += got == item.expect and item.expect >= 0
        wrong += result.hit and got != item.expect
        errors += result.outcome in (Outcome.ERROR, Outcome.BYPASS)
    ms = lat * 1000
    n = max(1, len(items))
    delta = command_calls(nodes) - before
    return Latency(
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        float(ms.mean()),
        hits / n,
        right / n,
        wrong,
        errors,
        len(items),
        {c: k / n for c, k in sorted(delta.items()) if c not in _NOT_LOOKUP},
    )


def measure_latency(
    engine: CacheEngine, wl: Workload, queries: int, seed: int, nodes: Sequence[str]
) -> dict[str, Latency]:
    rng = random.Random(seed)
    exact = [wl.exact_item(rng.randrange(len(wl.texts))) for _ in range(queries)]
    sem = rng.sample(wl.semantic, min(queries, len(wl.semantic)))
    miss = rng.sample(wl.miss, min(queries, len(wl.miss)))
    for item in exact[:10] + sem[:10] + miss[:10]:  # warm up
        ask(engine, item)
    return {
        kind: time_items(engine, items, nodes)
        for kind, items in zip(KINDS, (exact, sem, miss), strict=True)
    }


def combine(rounds: Sequence[dict[str, Latency]]) -> dict[str, Latency]:
    """Median over rounds of each figure (robust to a round hit by background load)."""
    out = {}
    for kind in KINDS:
        found = [r[kind] for r in rounds]
        out[kind] = Latency(
            float(np.median([x.p50 for x in found])),
            float(np.median([x.p99 for x in found])),
            float(np.median([x.mean for x in found])),
            float(np.median([x.hit_rate for x in found])),
            float(np.median([x.right for x in found])),
            sum(x.wrong for x in found),
            sum(x.errors for x in found),
            sum(x.n for x in found),
            {
                c: float(np.mean([x.commands.get(c, 0.0) for x in found]))
                for c in sorted({c for x in found for c in x.commands})
            },
        )
    return out


# -- throughput: client processes ---------------------------------------------------------
@dataclass
class WorkerSpec:
    wid: int
    urls: dict[str, str]
    items: list[Item]
    table: dict[str, np.ndarray]
    socket_timeout: float
    seed: int


def worker_main(spec: WorkerSpec, commands: Any, results: Any) -> None:
    """A client process: engines on both URLs, then runs the parent's timed commands."""
    try:
        engines = {
            t: make_engine(u, spec.table, spec.socket_timeout) for t, u in spec.urls.items()
        }
        items = list(spec.items)
        random.Random(spec.seed).shuffle(items)
        for engine in engines.values():
            for item in items[:30]:
                ask(engine, item)
        results.put(("ready", spec.wid))
    except BaseException as exc:
        results.put(("failed", spec.wid, repr(exc)))
        raise
    pos = 0
    while True:
        command = commands.get()
        if command[0] == "stop":
            break
        _, topology, start_at, seconds = command
        engine = engines[topology]
        lat: list[float] = []
        hits = errors = 0
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        end = t0 + seconds
        now = t0
        while now < end:
            item = items[pos % len(items)]
            pos += 1
            result = ask(engine, item)
            after = time.perf_counter()
            lat.append(after - now)
            now = after
            hits += result.hit
            errors += result.outcome in (Outcome.ERROR, Outcome.BYPASS)
        elapsed = now - t0
        ms = np.asarray(lat) * 1000
        results.put(
            (
                "done",
                spec.wid,
                len(lat),
                elapsed,
                float(np.percentile(ms, 50)),
                float(np.percentile(ms, 99)),
                hits,
                errors,
                time.process_time() - cpu0,
            )
        )
    for engine in engines.values():
        engine.close()


@dataclass
class RunResult:
    topology: str
    processes: int
    ops: float  # total lookups/s
    p50: float  # median over processes of each one's p50 (ms)
    p99: float  # median over processes of each one's p99 (ms)
    hit_rate: float
    errors: int
    client_cores: float  # client CPU seconds / wall seconds
    redis_cores: float  # this topology's redis-server CPU seconds / wall seconds


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of processes (Linux /proc); 0 for those that cannot be read."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


class Clients:
    """A pool of spawned client processes, each owning engines on both topologies."""

    def __init__(self, n: int, urls: dict[str, str], wl: Workload, mix: int, args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(n)]
        rng = random.Random(args.seed)
        items = (
            [wl.exact_item(rng.randrange(len(wl.texts))) for _ in range(mix)]
            + rng.sample(wl.semantic, min(mix, len(wl.semantic)))
            + rng.sample(wl.miss, min(mix, len(wl.miss)))
        )
        table = {
            t: wl.table[t] for item in items for t in (item.question, item.prompt) if t in wl.table
        }
        self.procs: list[Any] = []
        try:
            for wid in range(n):
                spec = WorkerSpec(wid, urls, items, table, args.socket_timeout, args.seed + wid)
                proc = ctx.Process(
                    target=worker_main, args=(spec, self.commands[wid], self.results), daemon=True
                )
                proc.start()
                self.procs.append(proc)
            for _ in range(n):
                msg = self.results.get(timeout=180)
                if msg[0] == "failed":
                    raise RuntimeError(f"client process {msg[1]} failed: {msg[2]}")
        except BaseException:
            self.close()
            raise

    def run(self, topology: str, n: int, seconds: float, pids: Sequence[int]) -> RunResult:
        start_at = time.time() + 0.3
        for wid in range(n):
            self.commands[wid].put(("run", topology, start_at, seconds))
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        replies = [self.results.get(timeout=seconds + 120) for _ in range(n)]
        redis_cores = (cpu_seconds(pids) - cpu0) / (time.perf_counter() - t0)
        done = [r for r in replies if r[0] == "done"]
        if len(done) != n:
            raise RuntimeError(f"client processes answered {replies}")
        total = sum(r[2] for r in done)
        return RunResult(
            topology,
            n,
            ops=sum(r[2] / r[3] for r in done),
            p50=float(np.median([r[4] for r in done])),
            p99=float(np.median([r[5] for r in done])),
            hit_rate=sum(r[6] for r in done) / max(1, total),
            errors=sum(r[7] for r in done),
            client_cores=sum(r[8] for r in done) / max(r[3] for r in done),
            redis_cores=redis_cores,
        )

    def close(self) -> None:
        for q in self.commands:
            q.put(("stop",))
        for proc in self.procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()  # our own client process
                proc.join(timeout=5)


def combine_runs(runs: Sequence[RunResult]) -> RunResult:
    first = runs[0]

    def med(name: str) -> float:
        return float(np.median([getattr(r, name) for r in runs]))

    return RunResult(
        first.topology,
        first.processes,
        ops=med("ops"),
        p50=med("p50"),
        p99=med("p99"),
        hit_rate=med("hit_rate"),
        errors=sum(r.errors for r in runs),
        client_cores=med("client_cores"),
        redis_cores=med("redis_cores"),
    )


# -- where the entries landed -------------------------------------------------------------
def spread(cluster: Any, engine: CacheEngine) -> list[dict[str, Any]]:
    """Entries (SCAN, then `get_node_from_key`), bucket indexes, slots and memory per
    master."""
    url = cluster.url
    slots = {n.port: sum(b - a + 1 for a, b in n.slots) for n in cluster.masters()}
    client = RedisCluster.from_url(url, decode_responses=True)
    try:
        per_node: Counter[str] = Counter()
        for key in client.scan_iter(match=f"{engine.layout.key_prefix}*", count=1000):
            per_node[client.get_node_from_key(key).name] += 1  # type: ignore[no-untyped-call]
        buckets: Counter[str] = Counter()
        for b in engine.layout.all_buckets:
            index = engine.layout.index_of(b)
            buckets[client.get_node_from_key(index).name] += 1  # type: ignore[no-untyped-call]
        rows = []
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        for node in sorted(primaries, key=lambda n: n.port):
            one = redis.Redis(host=node.host, port=node.port)
            try:
                info = one.info()
            finally:
                one.close()
            rows.append(
                {
                    "master": node.name,
                    "slots": slots.get(int(node.port), 0),
                    "entries": per_node[node.name],
                    "buckets": buckets[node.name],
                    "used_memory_mb": int(info["used_memory"]) / 2**20,
                    "replicas": int(info.get("connected_slaves", 0)),
                }
            )
        return rows
    finally:
        client.close()


@contextmanager
def private_cluster(console: Console, masters: int, replicas: int) -> Iterator[Any]:
    """An embedded loopback cluster in a temp dir, stopped and removed after."""
    data_dir = Path(tempfile.mkdtemp(prefix="semcache-bench-cluster-"))
    t = time.perf_counter()
    cluster = start_embedded_cluster(data_dir, masters=masters, replicas=replicas)
    try:
        nodes = cluster.nodes
        console.print(
            f"[dim]private cluster of {masters} masters + {masters * replicas} replicas, "
            f"started in {time.perf_counter() - t:.1f} s, at {cluster.url}: "
            + ", ".join(f"{n.role} {n.port} (pid {n.pid})" for n in nodes)
            + "; AOF and snapshots off[/]"
        )
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# -- reporting ----------------------------------------------------------------------------
def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def latency_table(lat: dict[str, dict[str, Latency]], entries: int, rounds: int) -> Table:
    table = Table(
        title=f"Lookup latency (ms) at {entries:,} entries, median over {rounds} rounds; "
        "recall: semantic queries served their intended entry",
        title_justify="left",
    )
    table.add_column("topology")
    for col in (
        "exact p50",
        "exact p99",
        "ok",
        "sem. p50",
        "sem. p99",
        "recall",
        "miss p50",
        "miss p99",
        "hit",
        "wrong",
        "errors",
    ):
        table.add_column(col, justify="right")
    for topology, row in lat.items():
        e, s, m = row["exact"], row["semantic"], row["miss"]
        table.add_row(
            topology,
            _ms(e.p50),
            _ms(e.p99),
            f"{e.right:.0%}",
            _ms(s.p50),
            _ms(s.p99),
            f"{s.right:.1%}",
            _ms(m.p50),
            _ms(m.p99),
            f"{m.hit_rate:.0%}",
            str(sum(x.wrong for x in row.values())),
            str(sum(x.errors for x in row.values())),
        )
    if set(lat) == set(TOPOLOGIES):
        c, o = lat["cluster"], lat["single"]
        cells = []
        for kind in KINDS:
            cells += [f"{c[kind].p50 / o[kind].p50:.2f}x", f"{c[kind].p99 / o[kind].p99:.2f}x"]
            cells.append("")
        table.add_row("cluster / single", *cells, "", "", style="bold")
    return table


def throughput_table(runs: Sequence[RunResult], seconds: float, rounds: int) -> Table:
    table = Table(
        title=f"Throughput: client processes x {seconds:g} s of a shuffled exact/semantic/miss "
        f"mix, median over {rounds} round(s); p50/p99 (ms): median over the processes of "
        "each one's; cores c+R: CPU seconds per second used by the clients + that "
        "topology's redis-servers",
        title_justify="left",
    )
    for col in (
        "procs",
        "single op/s",
        "p50",
        "p99",
        "cores c+R",
        "cluster op/s",
        "p50",
        "p99",
        "cores c+R",
        "cluster/single",
        "errors",
    ):
        table.add_column(col, justify="right")
    by = {(r.topology, r.processes): r for r in runs}
    for n in sorted({r.processes for r in runs}):
        o, c = by.get(("single", n)), by.get(("cluster", n))
        cells = [str(n)]
        for r in (o, c):
            if r is None:
                cells += ["-"] * 4
            else:
                cells += [
                    f"{r.ops:,.0f}",
                    _ms(r.p50),
                    _ms(r.p99),
                    f"{r.client_cores:.2f} + {r.redis_cores:.2f}",
                ]
        cells.append(f"{c.ops / o.ops:.2f}x" if o and c and o.ops else "-")
        cells.append(str(sum(r.errors for r in (o, c) if r is not None)))
        table.add_row(*cells)
    return table


def commands_table(lat: dict[str, dict[str, Latency]]) -> Table:
    table = Table(
        title="Redis commands per lookup (INFO commandstats deltas over the masters, mean "
        "over rounds; includes the counters' periodic flush)",
        title_justify="left",
    )
    table.add_column("kind")
    for topology in lat:
        table.add_column(topology, justify="left")
    for kind in KINDS:
        cells = []
        for topology in lat:
            cmds = lat[topology][kind].commands
            total = sum(cmds.values())
            cells.append(
                f"{total:.2f}: " + ", ".join(f"{c} {k:.2f}" for c, k in cmds.items() if k >= 0.005)
            )
        table.add_row(kind, *cells)
    return table


def fill_table(fill: dict[str, dict[str, float]]) -> Table:
    table = Table(
        title="Fill: CacheEngine.astore, 16 concurrent, one process; cores: CPU seconds per "
        "second (the client; that topology's redis-servers, replicas included)",
        title_justify="left",
    )
    for col in ("topology", "entries/s", "client cores", "Redis cores"):
        table.add_column(col, justify="left" if col == "topology" else "right")
    for topology, f in fill.items():
        table.add_row(
            topology,
            f"{f['entries_per_s']:,.0f}",
            f"{f['client_cores']:.2f}",
            f"{f['redis_cores']:.2f}",
        )
    if set(fill) == set(TOPOLOGIES):
        ratio = fill["cluster"]["entries_per_s"] / fill["single"]["entries_per_s"]
        table.add_row("cluster / single", f"{ratio:.2f}x", "", "", style="bold")
    return table


def spread_table(rows: Sequence[dict[str, Any]], entries: int, buckets: int) -> Table:
    table = Table(
        title=f"Where the entries landed on the cluster ({entries:,} entries, {buckets} "
        "bucket indexes; SCAN + get_node_from_key)",
        title_justify="left",
    )
    for col in (
        "master",
        "slots",
        "bucket indexes",
        "entries",
        "share",
        "used_memory MB",
        "replicas",
    ):
        table.add_column(col, justify="left" if col == "master" else "right")
    total = sum(r["entries"] for r in rows) or 1
    for r in rows:
        table.add_row(
            r["master"],
            f"{r['slots']:,}",
            str(r["buckets"]),
            f"{r['entries']:,}",
            f"{r['entries'] / total:.0%}",
            f"{r['used_memory_mb']:.1f}",
            str(r["replicas"]),
        )
    return table


def plot(
    lat: dict[str, dict[str, Latency]], runs: Sequence[RunResult], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"single": "tab:blue", "cluster": "tab:orange"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    xs = np.arange(len(KINDS))
    for k, topology in enumerate(lat):
        p50 = [lat[topology][kind].p50 for kind in KINDS]
        p99 = [lat[topology][kind].p99 for kind in KINDS]
        off = (k - 0.5) * 0.38
        ax1.bar(xs + off, p99, 0.36, color=colors[topology], alpha=0.3)
        ax1.bar(xs + off, p50, 0.36, color=colors[topology], label=f"{topology} p50 (p99 pale)")
    ax1.set_xticks(xs, list(KINDS))
    ax1.set_ylabel("lookup latency (ms)")
    ax1.set_title("One client, sequential lookups")
    ax1.legend()
    ax1.grid(True, axis="y", alpha=0.3)
    for topology in TOPOLOGIES:
        pts = sorted((r.processes, r.ops) for r in runs if r.topology == topology)
        if pts:
            px, py = zip(*pts, strict=True)
            ax2.plot(px, py, marker="o", color=colors[topology], label=topology)
    procs = sorted({r.processes for r in runs})
    ax2.set_xticks(procs)
    ax2.set_xlabel("client processes")
    ax2.set_ylabel("lookups / s (exact, semantic, miss mix)")
    ax2.set_title("Throughput")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    ax2.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000, help="stored entries")
    parser.add_argument("--tenants", type=int, default=50, help="tenants the entries share")
    parser.add_argument("--queries", type=int, default=300, help="timed lookups per kind/round")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds (median)")
    parser.add_argument("--procs", default="1,2,4", help="client process counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput run")
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1, help="replicas per master")
    parser.add_argument(
        "--socket-timeout",
        type=float,
        default=1.0,
        help="engine socket_timeout (default 0.1 s): raised so that a loaded machine's "
        "stalls show as latency, not as fail-open misses and an open breaker",
    )
    parser.add_argument("--synthetic", action="store_true", help="random vectors, no QQP")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1k entries, short")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label", default=None, help="names the results files")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.queries, args.rounds = 1000, 100, 2
        args.seconds, args.throughput_rounds = 3.0, 1
    procs = sorted({int(p) for p in args.procs.split(",") if p.strip()})
    label = args.label or ("cluster_quick" if args.quick else "cluster")
    pool = max(args.queries, 150 if args.quick else 500)

    console = common.new_console()
    console.print(f"[bold]semcache: one Redis node vs a Redis Cluster[/]  ({common.argv_line()})")
    if args.quick:
        console.print("[bold yellow]QUICK smoke run: small store, short runs; not the figures.[/]")
    info = common.machine()
    common.print_machine(console, info)
    console.print(f"[dim]semcache_core imported from {Path(semcache_core.__file__).parent}[/]")

    t = time.perf_counter()
    synthetic = args.synthetic or not qqp.data_path().is_file()
    build = synthetic_workload if synthetic else qqp_workload
    wl = build(args.entries, args.tenants, pool, args.seed)
    if synthetic:
        why = "--synthetic" if args.synthetic else f"{qqp.data_path()} is missing"
        console.print(f"[bold yellow]{why}: SYNTHETIC random vectors, not MiniLM/QQP.[/]")
    sims = np.array(wl.semantic_sims)
    console.print(
        f"[dim]workload ({time.perf_counter() - t:.1f} s): {wl.source}; {len(wl.texts):,} "
        f"entries over {args.tenants} tenants; {len(wl.semantic):,} semantic queries "
        f"(cosine to the stored twin {sims.min():.3f}-{sims.max():.3f}, each accepted by the "
        f"default verifier), {len(wl.miss):,} misses"
        + (f" (nearest stored <= {wl.miss_max_sim:.3f})" if not synthetic else "")
        + f"; engine socket_timeout {args.socket_timeout:g} s, defaults otherwise.[/]"
    )

    lat_rounds: dict[str, list[dict[str, Latency]]] = {t: [] for t in TOPOLOGIES}
    run_rounds: dict[tuple[str, int], list[RunResult]] = {}
    fill: dict[str, dict[str, float]] = {}
    where: list[dict[str, Any]] = []
    buckets = 0
    with (
        common.private_redis(console) as single_url,
        private_cluster(console, args.masters, args.replicas) as cluster,
    ):
        urls = {"single": single_url, "cluster": cluster.url}
        single_pid = redis.Redis.from_url(single_url).info("server")["process_id"]
        pids = {
            "single": [int(single_pid)],
            "cluster": [n.pid for n in cluster.nodes if n.pid is not None],
        }
        masters = {"single": [single_url], "cluster": [n.url for n in cluster.masters()]}
        engines = {t: make_engine(u, wl.table, args.socket_timeout) for t, u in urls.items()}
        try:
            buckets = engines["cluster"].layout.buckets
            console.rule("Filling")
            for topology in TOPOLOGIES:
                cpu_redis, cpu_client = cpu_seconds(pids[topology]), time.process_time()
                seconds = populate(engines[topology], wl)
                fill[topology] = {
                    "entries_per_s": len(wl.texts) / seconds,
                    "client_cores": (time.process_time() - cpu_client) / seconds,
                    "redis_cores": (cpu_seconds(pids[topology]) - cpu_redis) / seconds,
                }
                console.print(
                    f"  [dim]{topology}: stored {len(wl.texts):,} entries in {seconds:.1f} s "
                    f"({fill[topology]['entries_per_s']:,.0f}/s, async, 16 concurrent; cores "
                    f"{fill[topology]['client_cores']:.2f} client + "
                    f"{fill[topology]['redis_cores']:.2f} Redis)[/]"
                )
            where = spread(cluster, engines["cluster"])
            console.rule("Latency")
            for r in range(args.rounds):
                order = TOPOLOGIES if r % 2 == 0 else TOPOLOGIES[::-1]
                for topology in order:
                    got = measure_latency(
                        engines[topology], wl, args.queries, r, masters[topology]
                    )
                    lat_rounds[topology].append(got)
                    console.print(
                        f"  [dim]round {r + 1} {topology}: p50 ms exact {_ms(got['exact'].p50)}, "
                        f"semantic {_ms(got['semantic'].p50)}, miss {_ms(got['miss'].p50)}; "
                        f"recall {got['semantic'].right:.1%}[/]"
                    )
        finally:
            for engine in engines.values():
                engine.close()
        console.rule("Throughput")
        t = time.perf_counter()
        clients = Clients(max(procs), urls, wl, max(100, args.queries), args)
        console.print(
            f"  [dim]{max(procs)} client processes (spawn) ready in "
            f"{time.perf_counter() - t:.1f} s[/]"
        )
        try:
            k = 0
            for r in range(args.throughput_rounds):
                for n in procs:
                    order = TOPOLOGIES if k % 2 == 0 else TOPOLOGIES[::-1]
                    k += 1
                    for topology in order:
                        res = clients.run(topology, n, args.seconds, pids[topology])
                        run_rounds.setdefault((topology, n), []).append(res)
                        console.print(
                            f"  [dim]round {r + 1} {topology} x{n}: {res.ops:,.0f} lookups/s, "
                            f"p50 {_ms(res.p50)} ms, cores {res.client_cores:.2f} clients + "
                            f"{res.redis_cores:.2f} Redis, errors {res.errors}[/]"
                        )
        finally:
            clients.close()

    lat = {t: combine(lat_rounds[t]) for t in TOPOLOGIES}
    runs = [combine_runs(v) for v in run_rounds.values()]
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    console.rule("Results")
    console.print(latency_table(lat, len(wl.texts), args.rounds))
    console.print(throughput_table(runs, args.seconds, args.throughput_rounds))
    console.print(commands_table(lat))
    console.print(spread_table(where, len(wl.texts), buckets))
    console.print(fill_table(fill))
    console.print(
        f"[dim]Load average at the start {info['load']}, at the end {load_end} "
        f"({info['cpus']} CPUs, shared with whatever else runs here).[/]"
    )
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    png = common.RESULTS_DIR / f"{label}.png"
    plot(
        lat,
        runs,
        png,
        f"semcache, one node vs {args.masters}+{args.masters * args.replicas} cluster, "
        f"{len(wl.texts):,} entries{' (QUICK)' if args.quick else ''}"
        f"{' (SYNTHETIC vectors)' if synthetic else ''}; load {info['load']}",
    )
    raw = {
        "argv": common.argv_line(),
        "quick": args.quick,
        "machine": info,
        "load_end": load_end,
        "workload": {
            "source": wl.source,
            "synthetic": synthetic,
            "entries": len(wl.texts),
            "tenants": args.tenants,
            "semantic_queries": len(wl.semantic),
            "miss_queries": len(wl.miss),
            "semantic_sim_range": [float(sims.min()), float(sims.max())],
            "miss_max_sim": wl.miss_max_sim,
        },
        "settings": {k: v for k, v in vars(args).items()},
        "fill_entries_per_s": fill,
        "latency": {t: {k: asdict(v) for k, v in row.items()} for t, row in lat.items()},
        "latency_rounds": {
            t: [{k: asdict(v) for k, v in r.items()} for r in rows]
            for t, rows in lat_rounds.items()
        },
        "throughput": [asdict(r) for r in runs],
        "throughput_rounds": [asdict(r) for rs in run_rounds.values() for r in rs],
        "spread": where,
    }
    (common.RESULTS_DIR / f"{label}.json").write_text(json.dumps(raw, indent=1))
    console.print(f"[dim]plot: benchmarks/results/{png.name}[/]")
    txt = common.save_console(console, f"{label}.txt")
    print(f"saved {txt}, {label}.json and {png.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
