"""Answer quality through LangChain: does a semantic cache serve the right answers?

A fake chat model answers every QQP question with the question's duplicate group (the
connected components of the ``label == 1`` pairs; every text is in a group) and names
itself and the source question in the answer. So a served answer is *right* when it names
the query's group and the asking model.

1. Fill: each model is called once per unique ``text_a`` through ``cache=`` a write-only
   view of the cache (every ``text_a`` is stored; no lookups during the fill).
2. Ask: each model is asked every ``text_b`` that was never stored as a ``text_a``
   (``--limit`` samples them) through ``cache=`` a read-only view (lookups only, the
   update is a no-op), so the cache holds exactly the ``text_a`` answers throughout.

Two models: model A stores every ``text_a``, model B a random half (same prompts), and
every query is asked of both; a served answer written by the other model is a
cross-model serve (also counted wrong).

Metrics per threshold: hit rate = served / queries; precision = right / served;
wrong-serve rate = wrong / queries; recall = right / queries whose group has an entry
of the asking model. Units: semcache's threshold is cosine *similarity*;
langchain-redis' ``distance_threshold`` is cosine *distance* = 1 - similarity (shown
in both units).

The sweep comes from one loose pass per cache (similarity >= 0.79): both caches serve
the single nearest candidate, so the answer a stricter threshold serves is the same
answer, kept when its similarity clears the threshold. A second pass at each cache's
default checks this directly.

Usage:
    python benchmarks/quality.py                 # 5,000 asked questions per model
    python benchmarks/quality.py --limit 0       # every eligible text_b (45,921)
    python benchmarks/quality.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import common
import numpy as np
import qqp
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr
from rich.table import Table

SWEEP = (0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
LOOSE = 0.79
SEMCACHE_DEFAULT = 0.90
LC_REDIS_DEFAULT_DISTANCE = 0.2
ANSWER = re.compile(r"^group=(\d+) model=(\S+) src=(\d+)$")


class GroupModel(BaseChatModel):
    """Answers a QQP question with its duplicate group, its own name and the source."""

    model_name: str = "qqp-model-a"
    _index: dict[str, int] = PrivateAttr(default_factory=dict)
    _group: list[int] = PrivateAttr(default_factory=list)
    _calls: int = PrivateAttr(default=0)

    def bind_data(self, index: dict[str, int], group: list[int]) -> GroupModel:
        self._index = index
        self._group = group
        return self

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "qqp-group"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._calls += 1
        i = self._index[messages[-1].text]
        text = f"group={self._group[i]} model={self.model_name} src={i}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


class ReadOnly(BaseCache):
    """Lookups go to the wrapped cache; updates are dropped."""

    def __init__(self, inner: BaseCache) -> None:
        self.inner = inner

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.inner.lookup(prompt, llm_string)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        return None

    def clear(self, **kwargs: Any) -> None:
        return None


class WriteOnly(BaseCache):
    """Every lookup misses; updates go to the wrapped cache."""

    def __init__(self, inner: BaseCache) -> None:
        self.inner = inner

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return None

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.inner.update(prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        return None


# -- caches under test --------------------------------------------------------------------
@dataclass(frozen=True)
class CacheKind:
    key: str
    label: str
    make: Callable[[str, float | None, Any], BaseCache]  # (url, similarity, embeddings)
    default: float  # default threshold, as similarity
    unit: str


SEMCACHE_SETTINGS: dict[str, Any] = {}


def _semcache(url: str, threshold: float | None, emb: Any) -> BaseCache:
    from langchain_semcache import SemanticCache

    return SemanticCache(
        redis_url=url,
        embeddings=emb,
        namespace="quality",
        threshold=threshold,
        **SEMCACHE_SETTINGS,
    )


def _lc_redis(url: str, threshold: float | None, emb: Any) -> BaseCache:
    from langchain_redis import RedisSemanticCache

    if threshold is None:
        return RedisSemanticCache(embeddings=emb, redis_url=url, name="lcquality")
    distance = round(1.0 - threshold, 6)
    return RedisSemanticCache(
        embeddings=emb, redis_url=url, name="lcquality", distance_threshold=distance
    )


KINDS = [
    CacheKind("semcache", "semcache", _semcache, SEMCACHE_DEFAULT, "similarity"),
    CacheKind(
        "lc-redis", "langchain-redis", _lc_redis, 1.0 - LC_REDIS_DEFAULT_DISTANCE, "distance"
    ),
]


# -- one pass -----------------------------------------------------------------------------
@dataclass
class Served:
    """What one ask returned: the source entry (None: the model answered) and more."""

    query: int
    model: str
    src: int | None
    src_model: str | None
    group: int | None
    similarity: float | None


def ask_all(
    cache: BaseCache,
    models: Sequence[GroupModel],
    asked: Sequence[int],
    data: qqp.QQP,
    sim_fn: Callable[[int, int], float],
) -> list[Served]:
    out: list[Served] = []
    views = [m.model_copy(update={"cache": ReadOnly(cache)}) for m in models]
    for view, model in zip(views, models, strict=True):
        view.bind_data(model._index, model._group)
    for q in asked:
        text = data.texts[q]
        for view in views:
            msg = view.invoke(text)
            found = ANSWER.match(str(msg.content))
            if found is None:
                raise RuntimeError(f"unexpected answer {msg.content!r}")
            src = int(found.group(3))
            if src == q:  # the model answered: a miss
                out.append(Served(q, view.model_name, None, None, None, None))
                continue
            marker = msg.response_metadata.get("semcache") or {}
            sim = marker.get("similarity")
            out.append(
                Served(
                    q,
                    view.model_name,
                    src,
                    found.group(2),
                    int(found.group(1)),
                    float(sim) if sim is not None else sim_fn(q, src),
                )
            )
    return out


@dataclass
class Metrics:
    threshold: float
    queries: int
    hits: int
    right: int
    wrong: int
    cross_model: int
    eligible: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0

    @property
    def precision(self) -> float:
        return self.right / self.hits if self.hits else float("nan")

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.queries if self.queries else 0.0

    @property
    def recall(self) -> float:
        return self.right / self.eligible if self.eligible else float("nan")


def score(
    served: Sequence[Served],
    threshold: float,
    data: qqp.QQP,
    groups_in_cache: dict[str, set[int]],
) -> Metrics:
    hits = right = wrong = cross = eligible = 0
    for s in served:
        qgroup = data.group[s.query]
        eligible += qgroup in groups_in_cache[s.model]
        if s.src is None or s.similarity is None or s.similarity < threshold - 1e-9:
            continue
        hits += 1
        other = s.src_model != s.model
        cross += other
        if s.group == qgroup and not other:
            right += 1
        else:
            wrong += 1
    return Metrics(threshold, len(served), hits, right, wrong, cross, eligible)


# -- reporting ----------------------------------------------------------------------------
def metrics_table(title: str, rows: Sequence[tuple[str, str, Metrics, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "cache",
        "threshold",
        "queries",
        "hits",
        "hit rate",
        "precision",
        "wrong-serve",
        "recall",
        "cross-model",
        "how",
    ):
        table.add_column(col, justify="left" if col in ("cache", "threshold", "how") else "right")
    for cache, thr, m, how in rows:
        table.add_row(
            cache,
            thr,
            f"{m.queries:,}",
            f"{m.hits:,}",
            f"{m.hit_rate:.1%}",
            f"{m.precision:.1%}",
            f"{m.wrong_rate:.2%}",
            f"{m.recall:.1%}",
            str(m.cross_model),
            how,
        )
    return table


def thr_label(kind: CacheKind, sim: float, default: bool = False) -> str:
    mark = " (default)" if default else ""
    if kind.unit == "distance":
        return f"distance {1 - sim:.2f} (sim {sim:.2f}){mark}"
    return f"sim {sim:.2f}{mark}"


def plot(results: dict[str, dict[str, list[Metrics]]], label: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for scenario, per_cache in results.items():
        fig, axes = plt.subplots(1, 3, figsize=(17, 5))
        for cache, ms in per_cache.items():
            hr = [m.hit_rate * 100 for m in ms]
            prec = [m.precision * 100 for m in ms]
            wr = [m.wrong_rate * 100 for m in ms]
            th = [m.threshold for m in ms]
            axes[0].plot(hr, prec, marker="o", label=cache)
            for x, y, t in zip(hr, prec, th, strict=True):
                if round(t * 100) % 4 == 0 or t >= 0.95:
                    axes[0].annotate(f"{t:.2f}", (x, y), fontsize=7, alpha=0.7)
            axes[1].plot(hr, wr, marker="o", label=cache)
            for x, y, t in zip(hr, wr, th, strict=True):
                if round(t * 100) % 4 == 0 or t >= 0.95:
                    axes[1].annotate(f"{t:.2f}", (x, y), fontsize=7, alpha=0.7)
            axes[2].plot(th, wr, marker="o", label=f"{cache}: wrong-serve")
            axes[2].plot(th, hr, marker="x", linestyle="--", label=f"{cache}: hit rate")
        axes[0].set_xlabel("hit rate (% of queries)")
        axes[0].set_ylabel("precision (% of hits right)")
        axes[0].set_title(f"{scenario}: precision vs hit rate (labels: similarity)")
        axes[1].set_xlabel("hit rate (% of queries)")
        axes[1].set_ylabel("wrong-serve rate (% of queries)")
        axes[1].set_title(f"{scenario}: wrong serves vs hit rate")
        axes[1].axhline(1.0, color="grey", linestyle=":", linewidth=1)
        axes[2].set_xlabel("threshold (cosine similarity; distance = 1 - similarity)")
        axes[2].set_ylabel("% of queries")
        axes[2].set_title(f"{scenario}: per threshold")
        axes[2].axhline(1.0, color="grey", linestyle=":", linewidth=1)
        for ax in axes:
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        slug = scenario.lower().replace(" ", "_").replace("-", "_")
        path = common.RESULTS_DIR / f"{label}_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        names.append(path.name)
    return names


def _close(cache: BaseCache) -> int:
    """Close a semcache engine's pool; its lookup errors (0 for other caches)."""
    engine = getattr(cache, "engine", None)
    if engine is None:
        return 0
    errors = sum(int(t.get("errors", 0)) for t in engine.stats()["tenants"].values())
    engine.close()
    return errors


# -- main ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=5000, help="asked text_b per model (0: all)")
    parser.add_argument(
        "--store-limit", type=int, default=0, help="stored text_a (0: all; for smoke runs)"
    )
    parser.add_argument("--scenarios", default="one,two", help="one, two or both")
    parser.add_argument("--caches", default="semcache,lc-redis")
    parser.add_argument("--quick", action="store_true", help="2,000 stored, 300 asked")
    parser.add_argument(
        "--socket-timeout",
        type=float,
        default=1.0,
        help="semcache's Redis timeout (default 0.1 s): a loaded machine must not turn "
        "stores into skipped writes here, where answers are measured, not speed",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--label", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.store_limit = 300, 2000
    label = args.label or ("quality_quick" if args.quick else "quality")
    SEMCACHE_SETTINGS["socket_timeout"] = args.socket_timeout
    kinds = [k for k in KINDS if k.key in args.caches.split(",")]
    scenarios = [s for s in ("one", "two") if s in args.scenarios.split(",")]

    console = common.new_console()
    console.print(f"[bold]semcache quality benchmark[/]  ({common.argv_line()})")
    info = common.machine()
    common.print_machine(console, info)
    data = qqp.load()
    rng = random.Random(args.seed)
    stored = list(dict.fromkeys(p.a for p in data.pairs))
    if args.store_limit:
        stored = rng.sample(stored, min(args.store_limit, len(stored)))
    stored_set = set(stored)
    all_a = {p.a for p in data.pairs}
    # Ask the text_b never stored as a text_a, paired (any label) with a stored text_a.
    eligible = list(
        dict.fromkeys(p.b for p in data.pairs if p.b not in all_a and p.a in stored_set)
    )
    asked = rng.sample(eligible, args.limit) if 0 < args.limit < len(eligible) else eligible
    half_b = set(rng.sample(stored, len(stored) // 2))
    n_groups = len(set(data.group))
    console.print(
        f"[dim]{len(data.texts):,} unique texts in {n_groups:,} duplicate groups; storing "
        f"{len(stored):,} text_a; asking {len(asked):,} of {len(eligible):,} text_b never "
        f"stored as text_a (seed {args.seed}).[/]"
    )

    plain = qqp.VectorStore(data, "plain")
    plain.ensure(range(len(data.texts)))
    needed = sorted(stored_set | set(asked))
    table: dict[str, np.ndarray] = {data.texts[i]: plain.matrix[i] for i in needed}
    embeddings = common.TableEmbeddings(table.get, fallback="model")
    chat: qqp.VectorStore | None = None

    def load_chat_vectors() -> qqp.VectorStore:
        """langchain-redis embeds LangChain's JSON prompt: its vectors, built on first use."""
        store = qqp.VectorStore(data, "chatjson")
        store.ensure(needed)
        for i in needed:
            table[qqp.chat_prompt(data.texts[i])] = store.matrix[i]
        return store

    def sim_fn_for(kind: CacheKind) -> Callable[[int, int], float]:
        matrix = plain.matrix if kind.key == "semcache" or chat is None else chat.matrix
        return lambda q, s: float(matrix[q] @ matrix[s])

    model_a = GroupModel(model_name="qqp-model-a").bind_data(data.index, data.group)
    model_b = GroupModel(model_name="qqp-model-b").bind_data(data.index, data.group)

    results: dict[str, dict[str, list[Metrics]]] = {}
    semcache_errors = 0
    raw: dict[str, Any] = {"argv": common.argv_line(), "machine": info, "scenarios": {}}
    with common.private_redis(console) as url:
        titles = {"one": "One model", "two": "Two models sharing the cache"}
        rows: dict[str, list[tuple[str, str, Metrics, str]]] = {s: [] for s in scenarios}
        for kind in kinds:
            if kind.key == "lc-redis" and chat is None:
                chat = load_chat_vectors()
            # One fill serves both scenarios: model A stores every text_a, asked alone
            # (one model); then model B stores its half and both are asked (two models).
            common.flushall(url)
            target = kind.make(url, 1.0, embeddings)
            fills: dict[str, list[int]] = {}
            for scenario in scenarios:
                title = titles[scenario]
                models = [model_a] if scenario == "one" else [model_a, model_b]
                t0 = time.perf_counter()
                n_fill = 0
                for model in models:
                    if model.model_name in fills:
                        continue
                    texts = stored if model is model_a else [i for i in stored if i in half_b]
                    fills[model.model_name] = texts
                    writer = model.model_copy(update={"cache": WriteOnly(target)})
                    writer.bind_data(data.index, data.group)
                    for i in texts:
                        writer.invoke(data.texts[i])
                    n_fill += len(texts)
                fill_s = time.perf_counter() - t0
                groups_in_cache = {
                    model.model_name: {data.group[i] for i in fills[model.model_name]}
                    for model in models
                }
                loose = kind.make(url, LOOSE, embeddings)
                t1 = time.perf_counter()
                served = ask_all(loose, models, asked, data, sim_fn_for(kind))
                ask_s = time.perf_counter() - t1
                default_cache = kind.make(url, None, embeddings)
                t2 = time.perf_counter()
                direct = ask_all(default_cache, models, asked, data, sim_fn_for(kind))
                direct_s = time.perf_counter() - t2
                console.print(
                    f"  [dim]{title} / {kind.label}: stored {n_fill:,} more entries in "
                    f"{fill_s:.0f} s; loose pass {len(served):,} asks in {ask_s:.0f} s; "
                    f"default pass {direct_s:.0f} s[/]"
                )
                sweep = [score(served, t, data, groups_in_cache) for t in SWEEP]
                results.setdefault(title, {})[kind.label] = sweep
                for m in sweep:
                    is_default = abs(m.threshold - kind.default) < 1e-9
                    rows[scenario].append(
                        (kind.label, thr_label(kind, m.threshold, is_default), m, "sweep")
                    )
                # Direct pass at the default: every hit it serves counts.
                d = score(direct, -1.0, data, groups_in_cache)
                d.threshold = kind.default
                rows[scenario].append(
                    (kind.label, thr_label(kind, kind.default, True), d, "direct pass")
                )
                raw["scenarios"].setdefault(title, {})[kind.label] = {
                    "sweep": [m.__dict__ for m in sweep],
                    "direct_default": d.__dict__,
                    "fill_seconds": fill_s,
                    "ask_seconds": ask_s,
                }
                for c in (loose, default_cache):
                    semcache_errors += _close(c)
            semcache_errors += _close(target)
        for scenario in scenarios:
            console.print(
                metrics_table(
                    f"{titles[scenario]}: {len(asked):,} questions asked"
                    + (" of each model" if scenario == "two" else ""),
                    rows[scenario],
                )
            )
    console.print(
        f"[dim]texts not in the vector table (embedded with MiniLM instead; the caches' "
        f"dimension probes): {embeddings.fallbacks}. semcache lookup errors (timeouts count "
        f"as misses): {semcache_errors}[/]"
    )
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    pngs = plot(results, label)
    (common.RESULTS_DIR / f"{label}.json").write_text(json.dumps(raw, indent=1))
    console.print(f"[dim]plots: {', '.join('benchmarks/results/' + p for p in pngs)}[/]")
    txt = common.save_console(console, f"{label}.txt")
    print(f"saved {txt} and {label}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
