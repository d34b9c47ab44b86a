"""Lookup latency, throughput and memory: semcache against its peers, one run, one Redis.

Every cache is driven through its own public lookup on the same private Redis with the
same vectors (precomputed all-MiniLM-L6-v2 of QQP questions) and the same prompts
(LangChain's chat prompt, ``dumps([HumanMessage(question)])``, plus an ``llm_string``):

* semcache `SemanticCache` (the default, ``algorithm="auto"``: FLAT, rebuilt as HNSW
  past 5,000 entries, with a per-query EF_RUNTIME; the same index queried with
  ``hybrid_policy="batches"``; float16; FLAT float32)
* langchain-redis ``RedisCache`` (exact) and ``RedisSemanticCache`` (defaults)
* RedisVL ``SemanticCache`` (``redisvl.extensions.cache.llm``, defaults; called with the
  question, as its users do)
* langchain-core ``InMemoryCache`` (exact, in process)

Recall: for every semantic query the nearest of the stored entries (brute force with
numpy over the same vectors) is known; "nearest" is the share of queries served that
very entry (every answer names the entry it came from). ``--vectors random`` swaps the
vectors for random unit vectors of the same size (semantic queries at cosine 0.93-0.97
to their stored twin), the hardest case for an HNSW walk.

The twins are stored first (each size is the previous one grown, and every size must
hold them), so the index's recall here is that of its oldest entries, which an HNSW
graph finds more easily than the rest: on random vectors it reads high (99.2 % at 100k
where twins spread over the whole index are found 90 % of the time at the same EF).
`hnsw_sweep.py` measures raw RediSearch with twins drawn from the whole index.

Query kinds: an *exact* hit asks a stored prompt; a *semantic* hit asks a held-out QQP
duplicate whose stored twin has cosine similarity 0.93-0.995 (a hit at every cache's
default threshold); a *miss* asks a held-out question with no stored neighbour above
about 0.75. All caches live side by side in the one Redis; entries are added
incrementally (1k, then 10k, then 100k) and measured at each size in round-robin rounds
(each round samples fresh queries from a pool of 1,000 per kind; tables show the median
over rounds), so background load hits every cache alike. Throughput runs a shuffled mix
of the three kinds, sequentially (sync) and with 32 concurrent async callers. The
"MiniLM end to end" section embeds each query with the real model (fewer queries, one
size).

Usage:
    python benchmarks/speed.py                      # 1k, 10k, 100k entries (~45 min)
    python benchmarks/speed.py --quick              # smoke run (~2 min)
    python benchmarks/speed.py --sizes 1000,10000 --queries 500 --rounds 5
    python benchmarks/speed.py --vectors random --caches semcache,redisvl,lc-redis-semantic
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import re
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import common
import numpy as np
import qqp
import redis
from langchain_core.caches import BaseCache, InMemoryCache
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration
from rich.console import Console
from rich.table import Table

LLM_STRING = (
    "[('_type', 'bench-chat'), ('model_name', 'bench-model-1'), ('stop', None), "
    "('temperature', 0.0)]"
)
SEM_LOW, SEM_HIGH = 0.93, 0.995
MISS_CEILING = 0.75
FILLER = "synthetic filler entry #{}"
ONE_MILLION_NOTE = (
    "1M entries skipped: they need ~96k more texts than QQP has (fillers would be 90 % of "
    "the store), ~4-6 GB of Redis per cache configuration, and ~30 min of inserts per "
    "configuration at the ~1-2 ms per insert measured here (HNSW), on a 2-core machine"
)


# -- workload -----------------------------------------------------------------------------
@dataclass
class Workload:
    """Stored entries and query sets; an entry is (question, prompt, vector row)."""

    questions: list[str]
    prompts: list[str]
    vectors: np.ndarray  # rows for stored entries, then for every query
    exact: list[int]  # indices into stored entries
    semantic: list[int]  # indices into `queries`
    miss: list[int]
    queries: list[str] = field(default_factory=list)
    query_prompts: list[str] = field(default_factory=list)
    semantic_sims: list[float] = field(default_factory=list)
    miss_max_sim: float = 0.0
    fillers: int = 0
    table: dict[str, int] = field(default_factory=dict)
    stored_ids: list[int] = field(default_factory=list)  # QQP text index; -1: filler
    query_ids: list[int] = field(default_factory=list)

    def vector(self, text: str) -> np.ndarray | None:
        row = self.table.get(text)
        return None if row is None else self.vectors[row]

    def nearest_at(self, size: int, query_ids: Sequence[int]) -> list[int]:
        """Brute force (numpy): the nearest of the first ``size`` stored entries to each
        query (stored entry i answers with `answer_text` (i))."""
        n_stored = len(self.questions)
        stored = self.vectors[:size]
        out = []
        for start in range(0, len(query_ids), 256):
            rows = [n_stored + j for j in query_ids[start : start + 256]]
            out += [int(i) for i in np.argmax(self.vectors[rows] @ stored.T, axis=1)]
        return out


def randomize(wl: Workload, seed: int, low: float = 0.93, high: float = 0.97) -> Workload:
    """The same texts on random unit vectors (no clusters for an HNSW walk to follow,
    the hardest case for recall): each semantic query at cosine ``low``-``high`` to its
    stored twin, misses and stored entries independent."""
    rng = np.random.default_rng(seed)
    n_stored = len(wl.questions)
    vectors = rng.standard_normal(wl.vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    twins = vectors[: len(wl.semantic)]  # semantic query j's twin is stored entry j
    noise = vectors[n_stored : n_stored + len(wl.semantic)]
    noise -= (noise * twins).sum(axis=1, keepdims=True) * twins
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    c = rng.uniform(low, high, (len(twins), 1)).astype(np.float32)
    vectors[n_stored : n_stored + len(wl.semantic)] = c * twins + np.sqrt(1 - c**2) * noise
    wl.vectors = vectors
    wl.semantic_sims = [float(x) for x in c[:, 0]]
    stored = vectors[:n_stored]
    misses = vectors[n_stored + len(wl.semantic) :]
    wl.miss_max_sim = float(
        max((misses[i : i + 256] @ stored.T).max() for i in range(0, len(misses), 256))
    )
    return wl


def build_workload(data: qqp.QQP, plain: np.ndarray, size: int, q: int, seed: int) -> Workload:
    rng = random.Random(seed)
    sims = {
        (p.a, p.b): float(plain[p.a] @ plain[p.b])
        for p in data.pairs
        if p.label == 1 and p.a != p.b
    }
    candidates = [ab for ab, s in sims.items() if SEM_LOW <= s <= SEM_HIGH]
    rng.shuffle(candidates)
    a_set: set[int] = set()
    b_set: set[int] = set()
    chosen: list[tuple[int, int]] = []
    for a, b in candidates:
        if len(chosen) >= q:
            break
        if a in b_set or b in a_set or a in a_set or b in b_set:
            continue
        chosen.append((a, b))
        a_set.add(a)
        b_set.add(b)
    rest = [i for i in range(len(data.texts)) if i not in a_set and i not in b_set]
    rng.shuffle(rest)
    miss_pool = rest[: 4 * q]
    others = rest[4 * q :]
    stored = [a for a, _ in chosen] + others
    stored = stored[:size]
    fillers = size - len(stored)
    n_real = len(stored)
    questions = [data.texts[i] for i in stored] + [FILLER.format(i) for i in range(fillers)]
    rows = [plain[i] for i in stored]
    frng = np.random.default_rng(seed)
    for _ in range(fillers):
        j, k = frng.integers(0, n_real, size=2)
        blend = plain[stored[j]] + plain[stored[k]]
        rows.append((blend / np.linalg.norm(blend)).astype(np.float32))
    stored_vecs = np.vstack(rows).astype(np.float32)
    # Misses: held-out questions whose nearest stored neighbour is farthest.
    pool_vecs = plain[miss_pool]
    best = np.empty(len(miss_pool), dtype=np.float32)
    for start in range(0, len(miss_pool), 256):
        best[start : start + 256] = (pool_vecs[start : start + 256] @ stored_vecs.T).max(axis=1)
    order = np.argsort(best)[:q]
    miss_ids = [miss_pool[i] for i in order]
    query_ids = [b for _, b in chosen] + miss_ids
    wl = Workload(
        questions=questions,
        prompts=[qqp.chat_prompt(t) for t in questions],
        vectors=np.vstack([stored_vecs, plain[query_ids]]),
        exact=[],
        semantic=list(range(len(chosen))),
        miss=list(range(len(chosen), len(query_ids))),
        queries=[data.texts[i] for i in query_ids],
        semantic_sims=[sims[ab] for ab in chosen],
        miss_max_sim=float(best[order].max()) if len(order) else 0.0,
        fillers=fillers,
        stored_ids=stored + [-1] * fillers,
        query_ids=query_ids,
    )
    wl.query_prompts = [qqp.chat_prompt(t) for t in wl.queries]
    for i, (text, prompt) in enumerate(zip(wl.questions, wl.prompts, strict=True)):
        wl.table[text] = wl.table[prompt] = i
    for j, (text, prompt) in enumerate(zip(wl.queries, wl.query_prompts, strict=True)):
        wl.table[text] = wl.table[prompt] = len(questions) + j
    return wl


def answer_text(i: int) -> str:
    """A synthetic answer of about 400 characters (LLM answers are rarely shorter)."""
    return f"Answer #{i}. " + ("The cached model answer continues here with detail. " * 8)


# -- subjects -----------------------------------------------------------------------------
@dataclass
class Subject:
    """One cache under test, reduced to: store entries, look a query up (hit?)."""

    name: str
    semantic: bool
    lookup: Callable[[str, str], int | None]  # (question, prompt) -> served answer id
    alookup: Callable[[str, str], Awaitable[bool]]
    store: Callable[[str, str, int], None]  # (question, prompt, answer id)
    index: str | None = None
    astore: Callable[[str, str, int], Awaitable[None]] | None = None
    close: Callable[[], None] = lambda: None
    errors: Callable[[], int] = lambda: 0
    settle: Callable[[], str] = lambda: ""  # after inserts: let the index catch up
    # semcache: whether the search's first candidate is stored entry i (looked up with a
    # verifier that refuses all, so the result names it): the index's own recall.
    candidate: Callable[[str, str, int], bool] | None = None
    # Forget what the cache keeps of the queries it was asked (semcache's LRU of vectors
    # and its memo of parsed LangChain requests, not its L1 of answers), so a run over
    # queries asked before (the warm-up's, the latency runs') embeds and parses them
    # again, as the peers, which keep neither, do.
    forget: Callable[[], None] = lambda: None


ANSWER_ID = re.compile(r"Answer #(\d+)\.")


def answer_id(found: Any) -> int | None:
    """The stored entry an answer came from (`answer_text` names it); -1: unreadable."""
    if found is None or found == [] or found is False:
        return None
    if isinstance(found, list):
        first = found[0]
        text = getattr(getattr(first, "message", None), "content", None) or getattr(
            first, "text", None
        )
        if text is None and isinstance(first, dict):
            text = first.get("response")
    else:
        text = str(found)
    match = ANSWER_ID.match(str(text)) if text is not None else None
    return int(match.group(1)) if match else -1


def chat_answer(i: int) -> list[ChatGeneration]:
    return [ChatGeneration(message=AIMessage(content=answer_text(i)))]


def langchain_subject(
    name: str, cache: BaseCache, semantic: bool, index: str | None = None
) -> Subject:
    def lookup(question: str, prompt: str) -> int | None:
        return answer_id(cache.lookup(prompt, LLM_STRING))

    async def alookup(question: str, prompt: str) -> bool:
        return await cache.alookup(prompt, LLM_STRING) is not None

    def store(question: str, prompt: str, i: int) -> None:
        cache.update(prompt, LLM_STRING, chat_answer(i))

    async def astore(question: str, prompt: str, i: int) -> None:
        await cache.aupdate(prompt, LLM_STRING, chat_answer(i))

    return Subject(name, semantic, lookup, alookup, store, index, astore=astore)


def semcache_subject(
    name: str, url: str, embeddings: Any, namespace: str, **settings: Any
) -> Subject:
    from langchain_semcache import SemanticCache
    from semcache_core.verifiers import CandidateVerifier

    cache = SemanticCache(redis_url=url, embeddings=embeddings, namespace=namespace, **settings)
    subject = langchain_subject(name, cache, True, cache.engine.layout.index_name)
    subject.close = cache.engine.close

    def errors() -> int:
        stats = cache.engine.stats()
        return int(sum(v for k, v in _walk(stats) if "error" in k))

    subject.errors = errors

    def settle() -> str:
        """Take a due rebuild step now and wait for it (a real app's calls take it
        within a few seconds): the sizes are measured on the index auto chose."""
        from semcache_core._sync import index as sync_index

        engine = cache.engine
        t = time.perf_counter()
        sync_index.maintain(engine._cache.state, engine._store, force=True)
        status = engine.index_status()
        if status["building"]:
            status = engine.rebuild_index(status["building"]["algorithm"])
        took = time.perf_counter() - t
        return f"{status['algorithm']} gen {status['generation']} (settled in {took:.1f} s)"

    subject.settle = settle
    prompts: dict[int, str] = {}

    refuse_all = CandidateVerifier(lambda query, cached: False, "refuse-all")

    def candidate(question: str, prompt: str, nearest: int) -> bool:
        """Whether the index's first candidate is the brute-force nearest entry. The
        lookup runs with a verifier that refuses every candidate, so it ends ``guarded``
        on the first candidate the index returned above the threshold, whatever the
        built-in verifier would say: with it, a refused nearest entry followed by an
        accepted second candidate (QQP's clustered vectors have many above 0.92) would
        count as the index missing the nearest."""
        engine = cache.engine
        state = engine._cache.state
        kept, state.verifier = state.verifier, refuse_all
        try:
            result = engine.lookup(cache._request(prompt, LLM_STRING))
        finally:
            state.verifier = kept
        want = engine.key(cache._request(prompts[nearest], LLM_STRING))
        return result.key == want

    subject.candidate = candidate

    def forget() -> None:
        embedder = cache.engine._cache.state.embedder
        if embedder is not None:
            with embedder._lock:
                embedder._items.clear()
        with cache._requests._lock:
            cache._requests._items.clear()

    subject.forget = forget
    subject.prompts = prompts  # type: ignore[attr-defined]
    return subject


def _walk(obj: Any, prefix: str = "") -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _walk(v, f"{prefix}.{k}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append((prefix, float(obj)))
    return out


def lc_redis_semantic_subject(url: str, embeddings: Any, name: str = "lcbench") -> Subject:
    from langchain_redis import RedisSemanticCache

    cache = RedisSemanticCache(embeddings=embeddings, redis_url=url, name=name)
    subject = langchain_subject(
        "langchain-redis RedisSemanticCache", cache, True, cache.cache.index.name
    )

    def close() -> None:
        if name != "lcbench":
            cache.cache.delete()  # the end-to-end index: drop it and its entries
        cache.redis.close()

    subject.close = close
    return subject


def lc_redis_e2e_subject(
    url: str,
    data: qqp.QQP,
    wl: Workload,
    size: int,
    console: Console,
    loop: asyncio.AbstractEventLoop,
) -> Subject:
    """langchain-redis end to end: its index must hold what it embeds, MiniLM vectors of
    the JSON prompts, so it gets an index of its own, filled from cached vectors."""
    chat = qqp.VectorStore(data, "chatjson")
    rows = [i for i in wl.stored_ids[:size] if i >= 0] + wl.query_ids
    chat.ensure(rows)
    by_prompt = {qqp.chat_prompt(data.texts[i]): i for i in rows}

    def vector(prompt: str) -> np.ndarray | None:
        i = by_prompt.get(prompt)
        return None if i is None else chat.matrix[i]

    filler = lc_redis_semantic_subject(url, common.TableEmbeddings(vector), name="lce2e")
    populate(filler, wl, 0, size, console, loop)
    subject = lc_redis_semantic_subject(url, common.MiniLMEmbeddings(), name="lce2e")
    subject.close = filler.close
    return subject


def lc_redis_exact_subject(url: str) -> Subject:
    from langchain_redis import RedisCache

    cache = RedisCache(redis_url=url, prefix="lcexact")
    subject = langchain_subject("langchain-redis RedisCache", cache, False)
    subject.close = cache.redis.close
    return subject


def redisvl_subject(url: str, vectorizer: Any) -> Subject:
    from redisvl.extensions.cache.llm import SemanticCache as RVLSemanticCache

    cache = RVLSemanticCache(name="rvlbench", redis_url=url, vectorizer=vectorizer)

    def lookup(question: str, prompt: str) -> int | None:
        return answer_id(cache.check(prompt=question))

    async def alookup(question: str, prompt: str) -> bool:
        return bool(await cache.acheck(prompt=question))

    def store(question: str, prompt: str, i: int) -> None:
        cache.store(question, answer_text(i), metadata={"llm_string": LLM_STRING})

    async def astore(question: str, prompt: str, i: int) -> None:
        await cache.astore(question, answer_text(i), metadata={"llm_string": LLM_STRING})

    return Subject(
        "RedisVL SemanticCache",
        True,
        lookup,
        alookup,
        store,
        cache.index.name,
        close=cache.disconnect,
        astore=astore,
    )


def has_l1() -> bool:
    """Whether this semcache has the in-process L1 tier (issue 4)."""
    from semcache_core.config import CacheConfig

    return "l1_maxsize" in CacheConfig.model_fields


@dataclass(frozen=True)
class Spec:
    key: str
    label: str
    make: Callable[[str, Workload, str], Subject]  # (url, workload, mode) -> subject
    shares: str | None = None  # reads the entries another spec stores (query-time setting)


def _embeddings(wl: Workload, mode: str) -> Any:
    if mode == "minilm":
        return common.MiniLMEmbeddings()
    return common.TableEmbeddings(wl.vector)


def _semcache_embedder(wl: Workload, mode: str) -> Any:
    if mode == "minilm":
        from semcache_core.embedding import minilm

        return minilm()  # the bundled embedder: batched async path
    return common.TableEmbeddings(wl.vector)


def _vectorizer(wl: Workload, mode: str) -> Any:
    if mode == "minilm":
        m = common.MiniLMEmbeddings()
        return common.TableVectorizer(
            m.embed_query, m.aembed_query, model="sentence-transformers/all-MiniLM-L6-v2"
        )
    emb = common.TableEmbeddings(wl.vector)
    return common.TableVectorizer(emb.embed_query, emb.aembed_query)


SPECS = [
    Spec(
        "semcache",
        "semcache (default: auto)",
        lambda url, wl, mode: semcache_subject(
            "semcache (default: auto)", url, _semcache_embedder(wl, mode), "bench-hnsw"
        ),
    ),
    Spec(
        "semcache-batches",
        "semcache (HNSW f32, hybrid_policy=batches)",
        lambda url, wl, mode: semcache_subject(
            "semcache (HNSW f32, hybrid_policy=batches)",
            url,
            _semcache_embedder(wl, mode),
            "bench-hnsw",
            hybrid_policy="batches",
        ),
        shares="semcache",
    ),
    Spec(
        "semcache-l1",
        "semcache (HNSW f32, L1 in process)",
        lambda url, wl, mode: semcache_subject(
            "semcache (HNSW f32, L1 in process)",
            url,
            _semcache_embedder(wl, mode),
            "bench-hnsw",
            l1_maxsize=200_000,
        ),
        shares="semcache",
    ),
    Spec(
        "semcache-f16",
        "semcache (HNSW f16)",
        lambda url, wl, mode: semcache_subject(
            "semcache (HNSW f16)",
            url,
            _semcache_embedder(wl, mode),
            "bench-f16",
            datatype="float16",
        ),
    ),
    Spec(
        "semcache-flat",
        "semcache (FLAT f32)",
        lambda url, wl, mode: semcache_subject(
            "semcache (FLAT f32)",
            url,
            _semcache_embedder(wl, mode),
            "bench-flat",
            algorithm="flat",
        ),
    ),
    Spec(
        "lc-redis-semantic",
        "langchain-redis RedisSemanticCache",
        lambda url, wl, mode: lc_redis_semantic_subject(url, _embeddings(wl, mode)),
    ),
    Spec(
        "redisvl",
        "RedisVL SemanticCache",
        lambda url, wl, mode: redisvl_subject(url, _vectorizer(wl, mode)),
    ),
    Spec(
        "lc-redis-exact",
        "langchain-redis RedisCache",
        lambda url, wl, mode: lc_redis_exact_subject(url),
    ),
    Spec(
        "inmemory",
        "langchain-core InMemoryCache",
        lambda url, wl, mode: langchain_subject(
            "langchain-core InMemoryCache", InMemoryCache(), False
        ),
    ),
]
E2E_KEYS = ("semcache", "lc-redis-semantic", "redisvl")


# -- measurement --------------------------------------------------------------------------
@dataclass
class Latency:
    p50: float
    p99: float
    mean: float
    hit_rate: float
    n: int
    recall: float | None = None  # nearest stored entry served (brute force), semantic
    index_recall: float | None = None  # semcache: nearest was the search's first candidate


def time_sync(
    subject: Subject, items: Sequence[tuple[str, str]], nearest: Sequence[int] | None = None
) -> Latency:
    """Latency and hit rate; with ``nearest`` (the brute-force nearest stored entry of
    each query), recall: the share of queries served that very entry."""
    lat = np.empty(len(items))
    hits = found = 0
    for i, (question, prompt) in enumerate(items):
        t = time.perf_counter()
        try:
            served = subject.lookup(question, prompt)
        except Exception:  # a peer raising (RediSearch's TIMEOUT): a failed lookup
            served = None
            RAISED[subject.name] = RAISED.get(subject.name, 0) + 1
        lat[i] = time.perf_counter() - t
        hits += served is not None
        found += nearest is not None and served == nearest[i]
    ms = lat * 1000
    return Latency(
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        float(ms.mean()),
        hits / max(1, len(items)),
        len(items),
        found / max(1, len(items)) if nearest is not None else None,
    )


RAISED: dict[str, int] = {}  # lookups that raised, per cache (counted as errors)


def throughput_sync(subject: Subject, items: Sequence[tuple[str, str]]) -> float:
    t = time.perf_counter()
    for question, prompt in items:
        try:
            subject.lookup(question, prompt)
        except Exception:
            RAISED[subject.name] = RAISED.get(subject.name, 0) + 1
    return len(items) / (time.perf_counter() - t)


async def throughput_async(
    subject: Subject, items: Sequence[tuple[str, str]], concurrency: int
) -> float:
    warm = iter(items[: min(len(items), 2 * concurrency)])
    work = iter(items)

    async def worker(source: Any) -> None:
        for question, prompt in source:
            try:
                await subject.alookup(question, prompt)
            except Exception:
                RAISED[subject.name] = RAISED.get(subject.name, 0) + 1

    await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
    subject.forget()
    t = time.perf_counter()
    await asyncio.gather(*(worker(work) for _ in range(concurrency)))
    return len(items) / (time.perf_counter() - t)


@dataclass
class Row:
    cache: str
    size: int
    mode: str
    exact: Latency | None = None
    semantic: Latency | None = None
    miss: Latency | None = None
    sync_ops: float = 0.0
    async_ops: float = 0.0
    bytes_per_entry: float | None = None
    index_mb: float | None = None
    errors: int = 0
    note: str = ""


def measure(
    subject: Subject,
    wl: Workload,
    size: int,
    mode: str,
    q: int,
    throughput_ops: int,
    concurrency: int,
    loop: asyncio.AbstractEventLoop,
    seed: int,
) -> Row:
    rng = random.Random(seed)
    exact_ids = [rng.randrange(min(size, len(wl.semantic) or size)) for _ in range(q)]
    exact = [(wl.questions[i], wl.prompts[i]) for i in exact_ids]
    sem_ids = rng.sample(wl.semantic, min(q, len(wl.semantic)))
    miss_ids = rng.sample(wl.miss, min(q, len(wl.miss)))
    sem = [(wl.queries[j], wl.query_prompts[j]) for j in sem_ids]
    nearest = wl.nearest_at(size, sem_ids)
    miss = [(wl.queries[j], wl.query_prompts[j]) for j in miss_ids]
    row = Row(subject.name, size, mode)
    for question, prompt in exact[:10] + sem[:10] + miss[:10]:  # warm up
        with contextlib.suppress(Exception):
            subject.lookup(question, prompt)
    subject.forget()  # the timed runs ask the warm-up's queries too
    errors_before = subject.errors() + RAISED.get(subject.name, 0)
    row.exact = time_sync(subject, exact)
    if subject.semantic:
        row.semantic = time_sync(subject, sem, nearest)
        if subject.candidate is not None:  # untimed: the index apart from the verifier
            subject.prompts.update({i: wl.prompts[i] for i in nearest})  # type: ignore[attr-defined]
            hits = [subject.candidate(qq, pp, i) for (qq, pp), i in zip(sem, nearest, strict=True)]
            row.semantic.index_recall = sum(hits) / max(1, len(hits))
    row.miss = time_sync(subject, miss)
    mixed = exact + (sem if subject.semantic else []) + miss
    rng.shuffle(mixed)
    mixed = mixed[:throughput_ops]
    subject.forget()
    row.sync_ops = throughput_sync(subject, mixed)
    row.async_ops = loop.run_until_complete(throughput_async(subject, mixed, concurrency))
    row.errors = subject.errors() + RAISED.get(subject.name, 0) - errors_before
    return row


def combine(rounds: Sequence[Row]) -> Row:
    """Median over rounds of each figure (robust to a round hit by background load)."""

    def med(values: Sequence[float]) -> float:
        return float(np.median(values))

    def lat(kind: str) -> Latency | None:
        found = [getattr(r, kind) for r in rounds if getattr(r, kind) is not None]
        if not found:
            return None
        return Latency(
            med([x.p50 for x in found]),
            med([x.p99 for x in found]),
            med([x.mean for x in found]),
            med([x.hit_rate for x in found]),
            sum(x.n for x in found),
            None if found[0].recall is None else med([x.recall for x in found]),
            None
            if found[0].index_recall is None
            else med([x.index_recall for x in found if x.index_recall is not None]),
        )

    first = rounds[0]
    return Row(
        first.cache,
        first.size,
        first.mode,
        exact=lat("exact"),
        semantic=lat("semantic"),
        miss=lat("miss"),
        sync_ops=med([r.sync_ops for r in rounds]),
        async_ops=med([r.async_ops for r in rounds]),
        errors=sum(r.errors for r in rounds),
    )


def populate(
    subject: Subject,
    wl: Workload,
    start: int,
    stop: int,
    console: Console,
    loop: asyncio.AbstractEventLoop,
    concurrency: int = 16,
) -> float:
    """Store entries start..stop through the cache's own (async) store, 16 at a time."""

    async def run() -> None:
        it = iter(range(start, stop))

        async def worker() -> None:
            for i in it:
                if subject.astore is None:
                    subject.store(wl.questions[i], wl.prompts[i], i)
                else:
                    await subject.astore(wl.questions[i], wl.prompts[i], i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    t = time.perf_counter()
    loop.run_until_complete(run())
    seconds = time.perf_counter() - t
    if stop > start:
        console.print(
            f"  [dim]{subject.name}: stored {start:,}->{stop:,} in {seconds:.1f} s "
            f"({seconds / (stop - start) * 1000:.2f} ms/entry, {concurrency} concurrent)[/]"
        )
    return seconds


# -- reporting ----------------------------------------------------------------------------
def _ms(lat: Latency | None, part: str) -> str:
    if lat is None:
        return "-"
    value = getattr(lat, part)
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _hit(lat: Latency | None) -> str:
    return "-" if lat is None else f"{lat.hit_rate:.0%}"


def latency_table(rows: Sequence[Row], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("cache")
    table.add_column("entries", justify="right")
    for col in (
        "exact p50",
        "exact p99",
        "hit",
        "sem. p50",
        "sem. p99",
        "hit",
        "nearest",
        "index nearest",
        "miss p50",
        "miss p99",
        "hit",
        "errors",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.cache,
            f"{r.size:,}",
            _ms(r.exact, "p50"),
            _ms(r.exact, "p99"),
            _hit(r.exact),
            _ms(r.semantic, "p50"),
            _ms(r.semantic, "p99"),
            _hit(r.semantic),
            "-" if r.semantic is None or r.semantic.recall is None else f"{r.semantic.recall:.1%}",
            "-"
            if r.semantic is None or r.semantic.index_recall is None
            else f"{r.semantic.index_recall:.1%}",
            _ms(r.miss, "p50"),
            _ms(r.miss, "p99"),
            _hit(r.miss),
            str(r.errors),
        )
    return table


def throughput_table(rows: Sequence[Row], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("cache")
    table.add_column("entries", justify="right")
    for col in ("sync op/s", "async c=32 op/s", "async / sync", "Redis bytes/entry"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.cache,
            f"{r.size:,}",
            f"{r.sync_ops:,.0f}",
            f"{r.async_ops:,.0f}",
            f"{r.async_ops / r.sync_ops:.2f}x" if r.sync_ops else "-",
            "-" if r.bytes_per_entry is None else f"{r.bytes_per_entry:,.0f}",
        )
    return table


def ratio_table(rows: Sequence[Row], size: int) -> Table:
    """Each cache's p50 over semcache's default, per kind, at one size."""
    at = {r.cache: r for r in rows if r.size == size and r.mode == "precomputed"}
    base = at.get(SPECS[0].label)
    table = Table(
        title=f"p50 relative to semcache (default) at {size:,} entries (>1: slower than semcache)",
        title_justify="left",
    )
    for col in ("cache", "exact", "semantic", "miss", "mixed sync s/op"):
        table.add_column(col, justify="left" if col == "cache" else "right")
    if base is None:
        return table
    for name, r in at.items():

        def rel(a: Latency | None, b: Latency | None) -> str:
            return "-" if a is None or b is None else f"{a.p50 / b.p50:.2f}x"

        table.add_row(
            name,
            rel(r.exact, base.exact),
            rel(r.semantic, base.semantic),
            rel(r.miss, base.miss),
            f"{base.sync_ops / r.sync_ops:.2f}x" if r.sync_ops else "-",
        )
    return table


def memory_table(mem: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        title="Memory per entry (INFO used_memory delta / entries)", title_justify="left"
    )
    for col in ("cache", "entries", "bytes/entry", "FT.INFO index MB", "FT.INFO detail"):
        table.add_column(col, justify="left" if col in ("cache", "FT.INFO detail") else "right")
    for m in mem:
        detail = ", ".join(
            f"{k.removesuffix('_sz_mb')} {v:.1f}"
            for k, v in m["ft"].items()
            if k != "num_docs" and v >= 0.05
        )
        table.add_row(
            m["cache"],
            f"{m['size']:,}",
            f"{m['bytes_per_entry']:,.0f}",
            "-" if m["index_mb"] is None else f"{m['index_mb']:.1f}",
            detail or "-",
        )
    return table


def plot(rows: Sequence[Row], path_prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = [r for r in rows if r.mode == "precomputed"]
    out = []
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, kind in zip(axes, ("exact", "semantic", "miss"), strict=True):
        names = list(dict.fromkeys(r.cache for r in pre))
        for name in names:
            pts = [
                (r.size, getattr(r, kind).p50)
                for r in pre
                if r.cache == name and getattr(r, kind) is not None
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("entries")
        ax.set_ylabel("p50 lookup latency (ms)")
        ax.set_title(f"{kind} lookups (precomputed embeddings)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = common.RESULTS_DIR / f"{path_prefix}_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(path.name)

    largest = max(r.size for r in pre)
    at = [r for r in pre if r.size == largest]
    fig, ax = plt.subplots(figsize=(11, 5))
    xs = np.arange(len(at))
    ax.bar(xs - 0.2, [r.sync_ops for r in at], 0.4, label="sequential sync")
    ax.bar(xs + 0.2, [r.async_ops for r in at], 0.4, label="async, 32 concurrent")
    ax.set_xticks(xs, [r.cache.replace(" (", "\n(") for r in at], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("lookups / s (mixed exact, semantic, miss)")
    ax.set_title(f"Throughput at {largest:,} entries")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = common.RESULTS_DIR / f"{path_prefix}_throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(path.name)
    return out


# -- main ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="entries, comma-separated")
    parser.add_argument(
        "--queries", type=int, default=300, help="timed queries per kind, size and round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds (median)")
    parser.add_argument(
        "--throughput-ops", type=int, default=600, help="lookups per throughput run"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--e2e-size", type=int, default=10000, help="MiniLM end-to-end size")
    parser.add_argument("--e2e-queries", type=int, default=200)
    parser.add_argument("--no-e2e", action="store_true", help="skip MiniLM end to end")
    parser.add_argument(
        "--caches",
        default=",".join(s.key for s in SPECS if s.key != "semcache-l1"),
        help="subset of cache keys (semcache-l1: only when named, needs issue 4's L1)",
    )
    parser.add_argument(
        "--small-caches",
        default="semcache-f16,semcache-flat",
        help="caches measured only up to --small-max entries (to save time)",
    )
    parser.add_argument("--small-max", type=int, default=10000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1k entries, few queries")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads for MiniLM (0: torch's default); 1 avoids OpenMP "
        "spin-waits on a loaded 2-core machine",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--vectors",
        choices=("qqp", "random"),
        default="qqp",
        help="qqp: precomputed MiniLM vectors of QQP; random: random unit vectors",
    )
    parser.add_argument("--label", default=None, help="names the results files")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.e2e_size, args.e2e_queries = "1000", 100, 1000, 30
        args.rounds, args.throughput_ops = 2, 200
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    keys = [k.strip() for k in args.caches.split(",") if k.strip()]
    specs = [s for s in SPECS if s.key in keys and (s.key != "semcache-l1" or has_l1())]
    small = {k.strip() for k in args.small_caches.split(",") if k.strip()}
    label = args.label or ("speed_quick" if args.quick else "speed")
    e2e_size = args.e2e_size if args.e2e_size in sizes else sizes[-1]

    console = common.new_console()
    console.print(f"[bold]semcache speed benchmark[/]  ({common.argv_line()})")
    info = common.machine()
    common.print_machine(console, info)
    if max(sizes) < 1_000_000:
        console.print(f"[dim]{ONE_MILLION_NOTE}.[/]")

    data = qqp.load()
    store = qqp.VectorStore(data, "plain")
    store.ensure(range(len(data.texts)))
    pool = 200 if args.quick else 1000  # query pool per kind; each round samples from it
    wl = build_workload(data, store.matrix, max(sizes), pool, args.seed)
    if args.vectors == "random":
        wl = randomize(wl, args.seed)
        console.print(
            "[dim]vectors: random unit vectors of 384 dims (the QQP texts keep their roles); "
            "semantic queries at cosine 0.93-0.97 to their stored twin.[/]"
        )
    sem_sims = np.array(wl.semantic_sims)
    console.print(
        f"[dim]workload: {len(wl.questions):,} stored entries ({wl.fillers:,} synthetic "
        f"fillers: normalized sums of two stored vectors, because QQP has {len(data.texts):,} "
        f"unique questions and the queries are held out), {len(wl.semantic):,} semantic "
        f"queries (similarity to the stored twin {sem_sims.min():.3f}-{sem_sims.max():.3f}), "
        f"{len(wl.miss):,} misses (nearest stored neighbour <= {wl.miss_max_sim:.3f}).[/]"
    )
    if len(wl.semantic) < min(pool, args.queries):
        console.print(f"[yellow]only {len(wl.semantic)} semantic queries available[/]")

    rows: list[Row] = []
    mem: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    try:
        with common.private_redis(console) as url:
            # RediSearch's default query TIMEOUT (500 ms) fails a peer's FLAT search at
            # 100k on a loaded machine; lift it so every cache answers every query.
            try:
                redis.Redis.from_url(url).execute_command("CONFIG", "SET", "search-timeout", 0)
            except redis.ResponseError:
                redis.Redis.from_url(url).execute_command("FT.CONFIG", "SET", "TIMEOUT", 0)
            subjects: dict[str, Subject] = {}
            for spec in specs:
                subjects[spec.key] = spec.make(url, wl, "precomputed")
            traced: dict[str, float] = dict.fromkeys(subjects, 0.0)
            filled: dict[str, int] = dict.fromkeys(subjects, 0)
            for size in sizes:
                console.rule(f"{size:,} entries")
                active = [sp for sp in specs if sp.key not in small or size <= args.small_max]
                for spec in active:
                    if spec.shares:
                        continue
                    subject = subjects[spec.key]
                    gc.collect()
                    in_process = spec.key == "inmemory"
                    before = common.redis_memory(url)
                    if in_process:
                        tracemalloc.start()
                    populate(subject, wl, filled[spec.key], size, console, loop)
                    filled[spec.key] = size
                    settled = subject.settle()
                    if settled:
                        console.print(f"  [dim]{subject.name}: index {settled}[/]")
                    if in_process:
                        traced[spec.key] += tracemalloc.get_traced_memory()[0]
                        tracemalloc.stop()  # tracing would slow everything else
                    else:
                        traced[spec.key] += common.redis_memory(url) - before
                    ft = common.ft_info_mb(url, subject.index) if subject.index else {}
                    mem.append(
                        {
                            "cache": spec.label,
                            "size": size,
                            "bytes_per_entry": traced[spec.key] / size,
                            "index_mb": ft.get("total_index_memory_sz_mb"),
                            "ft": ft,
                        }
                    )
                # Round-robin: every cache meets the same background noise, in turn.
                per_round: dict[str, list[Row]] = {spec.key: [] for spec in active}
                for r in range(args.rounds):
                    order = active[r % len(active) :] + active[: r % len(active)]
                    for spec in order:
                        per_round[spec.key].append(
                            measure(
                                subjects[spec.key],
                                wl,
                                size,
                                "precomputed",
                                args.queries,
                                args.throughput_ops,
                                args.concurrency,
                                loop,
                                seed=r,
                            )
                        )
                for spec in active:
                    row = combine(per_round[spec.key])
                    owner = spec.shares or spec.key
                    row.bytes_per_entry = traced[owner] / size
                    rows.append(row)
                    console.print(
                        f"  [dim]{spec.label}: p50 ms exact {_ms(row.exact, 'p50')}, semantic "
                        f"{_ms(row.semantic, 'p50')}, miss {_ms(row.miss, 'p50')}; nearest "
                        f"{'-' if row.semantic is None else row.semantic.recall}, index "
                        f"{'-' if row.semantic is None else row.semantic.index_recall}; "
                        f"{row.sync_ops:,.0f} op/s sync, {row.async_ops:,.0f} async[/]"
                    )
                if not args.no_e2e and size == e2e_size:
                    for spec in specs:
                        if spec.key not in E2E_KEYS:
                            continue
                        e2e = (
                            lc_redis_e2e_subject(url, data, wl, size, console, loop)
                            if spec.key == "lc-redis-semantic"
                            else spec.make(url, wl, "minilm")
                        )
                        erow = measure(
                            e2e,
                            wl,
                            size,
                            "minilm",
                            args.e2e_queries,
                            args.e2e_queries * 3,
                            args.concurrency,
                            loop,
                            seed=99,
                        )
                        rows.append(erow)
                        e2e.close()
                        console.print(
                            f"  [dim]{spec.label} end to end: p50 ms exact "
                            f"{_ms(erow.exact, 'p50')}, semantic {_ms(erow.semantic, 'p50')}, "
                            f"miss {_ms(erow.miss, 'p50')}[/]"
                        )
            for subject in subjects.values():
                subject.close()
    finally:
        loop.close()

    console.rule("Results")
    pre = [r for r in rows if r.mode == "precomputed"]
    console.print(
        latency_table(pre, "Lookup latency (ms), precomputed embeddings (the caches' own cost)")
    )
    console.print(
        throughput_table(
            pre,
            "Throughput (lookups/s over a shuffled mix of exact, semantic and miss queries; "
            "exact-only caches: exact and miss) and Redis memory",
        )
    )
    for size in sizes:
        console.print(ratio_table(rows, size))
    e2e_rows = [r for r in rows if r.mode == "minilm"]
    if e2e_rows:
        e2e_title = (
            f"All-MiniLM-L6-v2 end to end at {e2e_size:,} entries, {args.e2e_queries} queries "
            "per kind (fewer, to keep time down). semcache embeds the question and skips "
            "embedding on exact hits; langchain-redis embeds LangChain's JSON prompt (its "
            "index holds MiniLM vectors of those prompts); RedisVL embeds the question"
        )
        console.print(latency_table(e2e_rows, e2e_title))
        console.print(throughput_table(e2e_rows, "End to end throughput"))
    console.print(memory_table(mem))
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    pngs = plot(rows, label)
    raw = {
        "argv": common.argv_line(),
        "machine": info,
        "rows": [
            {
                **{k: v for k, v in r.__dict__.items() if not isinstance(v, Latency)},
                **{
                    k: v.__dict__
                    for k, v in r.__dict__.items()
                    if isinstance(v, Latency) and v is not None
                },
            }
            for r in rows
        ],
        "memory": mem,
    }
    (common.RESULTS_DIR / f"{label}.json").write_text(json.dumps(raw, indent=1))
    console.print(f"[dim]plots: {', '.join('benchmarks/results/' + p for p in pngs)}[/]")
    txt = common.save_console(console, f"{label}.txt")
    print(f"saved {txt} and {label}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
