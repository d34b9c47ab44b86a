"""The client's share of a LangChain cache lookup: semcache against langchain-redis.

One private embedded Redis, one run, round-robin rounds (every cache meets the same
background load). Each cache is called through LangChain's ``BaseCache`` interface with
the prompt LangChain hands it for a chat model (``dumps([HumanMessage(question)])``) and
an ``llm_string``; answers are one ``ChatGeneration`` of ~400 characters with usage.

Rows (sync ``lookup`` unless marked ``async``):

* exact hit: a stored prompt. semcache exact-only (no embeddings), semcache with the
  in-process L1 (``l1_maxsize``), langchain-redis ``RedisCache``.
* miss: a prompt never stored, and never asked before (each miss asks a new one, as a
  first-time question does). semcache exact-only against ``RedisCache``; semcache
  with an embedder (exact read + KNN) against ``RedisSemanticCache`` (KNN). The
  embedder is a hashed one (a table lookup), so the embedding model costs nothing and
  the figures are the caches' own.
* async exact hit: ``alookup`` (``RedisCache`` has no async lookup of its own:
  LangChain's default runs the sync one in an executor).

Columns: p50 and p99 wall time in ms over all calls; the best round's p50 (the rounds
are short and interleaved, so on a machine with other load this is the figure least
disturbed by it); and CPU ms per call of this process, median over rounds
(``time.process_time``: the client's work, Redis excluded).

Before/after a change: run it with ``PYTHONPATH`` at an export of the older tree
(``git archive <commit> | tar -x -C /tmp/base``); the script itself is the same.

Usage:
    python benchmarks/hotpath.py                 # 1,000 entries, 30 rounds x 60 calls
    python benchmarks/hotpath.py --entries 10000 --rounds 5 --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import common
from langchain_core.embeddings import Embeddings
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration
from rich.table import Table

LLM_STRING = (
    "[('_type', 'bench-chat'), ('model_name', 'bench-model-1'), ('stop', None), "
    "('temperature', 0.0)]"
)


class HashEmbeddings(Embeddings):
    """Deterministic unit vectors (384 dims) from a sha256 of the text: unrelated texts
    are far apart, so a new question is a miss; costs a table lookup once warm."""

    def __init__(self) -> None:
        self.model = "hash-384"
        self._memo: dict[str, list[float]] = {}

    def embed_query(self, text: str) -> list[float]:
        vec = self._memo.get(text)
        if vec is None:
            vec = self._memo[text] = common.hash_vector(text).tolist()
        return vec

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


def question(i: int) -> str:
    return f"How do I configure feature number {i} of the product for my team?"


def answer(i: int) -> list[ChatGeneration]:
    text = f"Answer #{i}. " + ("The cached model answer continues here with detail. " * 8)
    message = AIMessage(
        content=text,
        usage_metadata={"input_tokens": 21, "output_tokens": 96, "total_tokens": 117},
        response_metadata={"model_name": "bench-model-1", "finish_reason": "stop"},
    )
    return [ChatGeneration(message=message, generation_info={"finish_reason": "stop"})]


def prompt(text: str) -> str:
    return dumps([HumanMessage(content=text)])


@dataclass
class Row:
    label: str
    call: Callable[[str], Any]  # prompt -> value (sync) or awaitable
    prompts: list[str]
    is_async: bool = False
    expect_hit: bool = True
    fresh: bool = False  # each call a prompt this process never asked (a real miss)
    wall: list[float] = field(default_factory=list)
    round_p50: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wrong: int = 0


def run_batch(row: Row, loop: asyncio.AbstractEventLoop, n: int, rng: random.Random) -> None:
    if row.fresh:
        prompts, row.prompts = row.prompts[:n], row.prompts[n:]
    else:
        prompts = [rng.choice(row.prompts) for _ in range(n)]
    gc.collect()
    cpu0 = time.process_time()
    start = len(row.wall)
    if row.is_async:

        async def go() -> None:
            for p in prompts:
                t = time.perf_counter()
                got = await row.call(p)
                row.wall.append(time.perf_counter() - t)
                row.wrong += (got is not None) != row.expect_hit

        loop.run_until_complete(go())
    else:
        for p in prompts:
            t = time.perf_counter()
            got = row.call(p)
            row.wall.append(time.perf_counter() - t)
            row.wrong += (got is not None) != row.expect_hit
    row.cpu.append((time.process_time() - cpu0) / n)
    row.round_p50.append(statistics.median(row.wall[start:]))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--out", default="hotpath.txt")
    args = parser.parse_args()

    from langchain_redis import RedisCache, RedisSemanticCache

    from langchain_semcache import SemanticCache

    console = common.new_console()
    info = common.machine()
    common.print_machine(console, info)
    with common.private_redis(console) as url:
        emb = HashEmbeddings()
        ns = f"hot{uuid.uuid4().hex[:6]}"
        exact = SemanticCache(redis_url=url, namespace=ns + "x")
        # L1 serves a hot set (its copies live l1_ttl; 30 s by default would expire most
        # of 1,000 prompts asked twice a minute): 100 prompts, held for the whole run.
        l1 = SemanticCache(redis_url=url, namespace=ns + "x", l1_maxsize=100_000, l1_ttl=3600)
        sem = SemanticCache(redis_url=url, namespace=ns + "s", embeddings=emb, dims=384)
        lc = RedisCache(redis_url=url, prefix="lcexact")
        lcsem = RedisSemanticCache(embeddings=emb, redis_url=url, name="lcsem")

        stored = [prompt(question(i)) for i in range(args.entries)]
        hot = stored[:100]
        # Misses ask prompts never asked before, each once: a first-time question.
        per_row = min(args.calls, 200) + args.rounds * args.calls
        unseen_ids = range(10**6, 10**6 + 4 * per_row)
        unseen = [prompt(question(i)) for i in unseen_ids]

        def fresh(k: int) -> list[str]:
            return unseen[k * per_row : (k + 1) * per_row]

        t0 = time.perf_counter()
        for i, p in enumerate(stored):
            ans = answer(i)
            exact.update(p, LLM_STRING, ans)
            sem.update(p, LLM_STRING, ans)
            lc.update(p, LLM_STRING, ans)
            lcsem.update(p, LLM_STRING, ans)
        for i in unseen_ids:
            # Warm the hash memo (prompt for langchain-redis, question for semcache):
            # the miss rows measure the caches, not the embedder.
            emb.embed_query(prompt(question(i)))
            emb.embed_query(question(i))
        console.print(
            f"[dim]{args.entries} entries stored in each cache in "
            f"{time.perf_counter() - t0:.1f} s[/]"
        )

        rows = [
            Row("exact hit: semcache", lambda p: exact.lookup(p, LLM_STRING), stored),
            Row("exact hit: semcache + L1", lambda p: l1.lookup(p, LLM_STRING), hot),
            Row(
                "exact hit: langchain-redis RedisCache", lambda p: lc.lookup(p, LLM_STRING), stored
            ),
            Row(
                "async exact hit: semcache",
                lambda p: exact.alookup(p, LLM_STRING),
                stored,
                is_async=True,
            ),
            Row(
                "async exact hit: semcache + L1",
                lambda p: l1.alookup(p, LLM_STRING),
                hot,
                is_async=True,
            ),
            Row(
                "async exact hit: langchain-redis RedisCache",
                lambda p: lc.alookup(p, LLM_STRING),
                stored,
                is_async=True,
            ),
            Row(
                "miss, exact only: semcache",
                lambda p: exact.lookup(p, LLM_STRING),
                fresh(0),
                expect_hit=False,
                fresh=True,
            ),
            Row(
                "miss, exact only: langchain-redis RedisCache",
                lambda p: lc.lookup(p, LLM_STRING),
                fresh(1),
                expect_hit=False,
                fresh=True,
            ),
            Row(
                "miss, semantic: semcache",
                lambda p: sem.lookup(p, LLM_STRING),
                fresh(2),
                expect_hit=False,
                fresh=True,
            ),
            Row(
                "miss, semantic: langchain-redis RedisSemanticCache",
                lambda p: lcsem.lookup(p, LLM_STRING),
                fresh(3),
                expect_hit=False,
                fresh=True,
            ),
        ]
        loop = asyncio.new_event_loop()
        rng = random.Random(7)
        for row in rows:  # warm-up: connections, index, L1
            run_batch(row, loop, min(args.calls, 200), rng)
            row.wall.clear()
            row.cpu.clear()
            row.round_p50.clear()
        if l1.engine._state.l1 is not None:  # fill L1 with every stored entry
            for p in hot:
                l1.lookup(p, LLM_STRING)
        for r in range(args.rounds):
            order = rows[:]
            rng.shuffle(order)
            for row in order:
                run_batch(row, loop, args.calls, rng)
            console.print(f"[dim]round {r + 1}/{args.rounds} done[/]")
        loop.close()

        table = Table(
            title=(
                f"LangChain cache lookups, {args.entries} entries, "
                f"{args.rounds} rounds x {args.calls} calls (ms)"
            )
        )
        for col in ("lookup", "p50", "p99", "best-round p50", "CPU/call", "wrong"):
            table.add_column(col, justify="left" if col == "lookup" else "right")
        for row in rows:
            table.add_row(
                row.label,
                f"{pct(row.wall, 0.5):.3f}",
                f"{pct(row.wall, 0.99):.3f}",
                f"{min(row.round_p50) * 1000:.3f}",
                f"{statistics.median(row.cpu) * 1000:.3f}",
                str(row.wrong),
            )
        console.print(table)
        ratios = Table(title="semcache / peer")
        ratios.add_column("pair")
        for col in ("p50", "best-round p50", "CPU/call"):
            ratios.add_column(col, justify="right")
        by = {row.label: row for row in rows}
        for a, b in (
            ("exact hit: semcache", "exact hit: langchain-redis RedisCache"),
            ("exact hit: semcache + L1", "exact hit: langchain-redis RedisCache"),
            ("async exact hit: semcache", "async exact hit: langchain-redis RedisCache"),
            ("miss, exact only: semcache", "miss, exact only: langchain-redis RedisCache"),
            ("miss, semantic: semcache", "miss, semantic: langchain-redis RedisSemanticCache"),
        ):
            ra, rb = by[a], by[b]
            ratios.add_row(
                f"{a} / {b.split(': ', 1)[1]}",
                f"{pct(ra.wall, 0.5) / pct(rb.wall, 0.5):.2f}x",
                f"{min(ra.round_p50) / min(rb.round_p50):.2f}x",
                f"{statistics.median(ra.cpu) / statistics.median(rb.cpu):.2f}x",
            )
        console.print(ratios)
        for name, cache in (("exact", exact), ("L1", l1), ("semantic", sem)):
            local = cache.engine.stats(totals=False)
            console.print(
                f"[dim]semcache {name}: errors {local['errors']}"
                + (f", L1 {local['l1']}" if "l1" in local else "")
                + "[/]"
            )
        console.print(f"[dim]command: {common.argv_line()}[/]")
        for cache in (exact, l1, sem):
            cache.engine.close()
        lc.redis.close()
        lcsem.redis.close()
    path = common.save_console(console, args.out)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
