"""Safety on real app prompts: wrong serves on near-misses, hits on paraphrases.

The corpus (`benchmarks/corpus/pairs_*.jsonl`, hand-written for semcache) holds pairs of
requests across app categories (support, extraction, classification, translation,
summaries, dates and units, RAG, agent and tool tasks, SQL and code, follow-ups,
negation and roles). In a ``near_miss`` pair the second request needs a different
answer; in a ``paraphrase`` pair the same one.

Each pair runs end to end through a framework with its own tenant (so only request
``a``'s entry can answer): request ``a`` is answered by a fake model and cached, then
request ``b`` is sent. A served ``b`` of a near-miss is a wrong serve; of a paraphrase,
a hit. The shapes are sent as apps send them:

* LangChain (`SemanticCache` via ``set_llm_cache``, a chat model): ``plain`` as one
  human message; ``template`` through a ``ChatPromptTemplate``; ``rag`` as the filled
  prompt; ``chat`` with the earlier turns as history.
* LlamaIndex (`wrap`): ``plain`` via ``complete``; ``template`` and ``rag`` via
  ``predict`` with the user's text as ``query_str`` (what LlamaIndex's own templates do);
  ``chat`` via ``chat`` with the history.
* LangChain, declared: as LangChain, with ``cache_context(question=user_text)`` around
  templated and RAG calls (the documented way to say what the question is).

Every lookup runs with threshold 0 and the verifier on, and records the nearest
candidate's similarity and whether the verifier agreed, so one pass gives the curve at
every threshold ("served at t" = similarity >= t and verified). The table is at the
engine's default threshold; the plot shows the sweep, with the verifier off for
reference (similarity alone).

Usage:
    python benchmarks/safety.py              # all pairs, three pipelines
    python benchmarks/safety.py --quick      # 20 pairs per category
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    RESULTS_DIR,
    argv_line,
    machine,
    new_console,
    print_machine,
    private_redis,
    save_console,
)
from rich.progress import Progress
from rich.table import Table

from semcache_core import CacheConfig, CacheEngine, Outcome, cache_context, last_lookup
from semcache_core.embedding import minilm

CORPUS = sorted((Path(__file__).resolve().parent / "corpus").glob("pairs_*.jsonl"))
RAG_TEMPLATE = (
    "Answer the question using only the context below.\n\nContext:\n{context_str}"
    "\n\nQuestion: {query_str}\nAnswer:"
)
PIPELINES = ("langchain", "langchain_declared", "llamaindex")


def load_pairs() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in CORPUS:
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def _lc_messages(pair: dict[str, Any], side: str) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    history = pair.get(f"history_{side}") or []
    messages: list[Any] = [
        HumanMessage(t["content"]) if t["role"] == "user" else AIMessage(t["content"])
        for t in history
    ]
    return [*messages, HumanMessage(pair[side])]


def run_langchain(pair: dict[str, Any], side: str, model: Any, declared: bool) -> None:
    from langchain_core.prompts import ChatPromptTemplate

    user_text = pair.get(f"input_{side}")
    if pair["shape"] == "template":
        chain = ChatPromptTemplate.from_messages([("human", pair["template"])]) | model
        if declared:
            with cache_context(question=user_text):
                chain.invoke({"input": user_text})
        else:
            chain.invoke({"input": user_text})
    elif pair["shape"] == "rag" and declared:
        with cache_context(question=user_text):
            model.invoke(_lc_messages(pair, side))
    else:
        model.invoke(_lc_messages(pair, side))


def run_llamaindex(pair: dict[str, Any], side: str, llm: Any) -> None:
    from llama_index.core import PromptTemplate
    from llama_index.core.llms import ChatMessage

    if pair["shape"] == "template":
        prompt = PromptTemplate(pair["template"].replace("{input}", "{query_str}"))
        llm.predict(prompt, query_str=pair[f"input_{side}"])
    elif pair["shape"] == "rag":
        llm.predict(
            PromptTemplate(RAG_TEMPLATE),
            context_str=pair["context"],
            query_str=pair[f"input_{side}"],
        )
    elif pair["shape"] == "chat":
        history = pair.get(f"history_{side}") or []
        messages = [ChatMessage(role=t["role"], content=t["content"]) for t in history]
        llm.chat([*messages, ChatMessage(role="user", content=pair[side])])
    else:
        llm.complete(pair[side])


def measure(url: str, pairs: list[dict[str, Any]], console: Any) -> list[dict[str, Any]]:
    """One record per pair and pipeline: outcome, similarity, verified."""
    from langchain_core.globals import set_llm_cache

    from langchain_semcache import SemanticCache
    from llamaindex_semcache import wrap
    from semcache_demo.langchain_fakes import FakeSupportChatModel
    from semcache_demo.llamaindex_fakes import FakeLLM

    engine = CacheEngine(
        url, embedder=minilm(), namespace=f"safety{int(time.time())}", threshold=0.0
    )
    set_llm_cache(SemanticCache(engine=engine))
    model = FakeSupportChatModel()
    llm = wrap(FakeLLM(), engine)
    records: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("pairs", total=len(pairs) * len(PIPELINES))
        for pair in pairs:
            for pipeline in PIPELINES:
                with cache_context(tenant=f"{pipeline}:{pair['id']}"):
                    for side in ("a", "b"):
                        if pipeline == "llamaindex":
                            run_llamaindex(pair, side, llm)
                        else:
                            run_langchain(pair, side, model, pipeline.endswith("declared"))
                        result = last_lookup()
                assert result is not None
                records.append(
                    {
                        "id": pair["id"],
                        "category": pair["category"],
                        "kind": pair["kind"],
                        "differs": pair["differs"],
                        "pipeline": pipeline,
                        "outcome": result.outcome.value,
                        "similarity": result.similarity,
                        "verified": result.outcome
                        in (Outcome.SEMANTIC_HIT, Outcome.EXACT_HIT, Outcome.PROMOTED),
                        "guard": result.guard,
                    }
                )
                progress.advance(task)
    set_llm_cache(None)
    engine.close()
    return records


def served(record: dict[str, Any], threshold: float, verifier: bool = True) -> bool:
    sim = record["similarity"]
    if record["outcome"] == Outcome.EXACT_HIT.value:
        return True
    if sim is None or sim + 1e-6 < threshold:
        return False
    return record["verified"] or not verifier


def rates(
    records: list[dict[str, Any]], threshold: float, verifier: bool = True
) -> tuple[float, float, int, int]:
    nm = [r for r in records if r["kind"] == "near_miss"]
    pp = [r for r in records if r["kind"] == "paraphrase"]
    wrong = sum(served(r, threshold, verifier) for r in nm) / max(len(nm), 1)
    hit = sum(served(r, threshold, verifier) for r in pp) / max(len(pp), 1)
    return wrong, hit, len(nm), len(pp)


def report(records: list[dict[str, Any]], threshold: float, console: Any) -> None:
    for pipeline in PIPELINES:
        rows = [r for r in records if r["pipeline"] == pipeline]
        table = Table(title=f"{pipeline}: threshold {threshold:g}, verifier balanced")
        for col in ("category", "near-misses", "wrong served", "(similarity alone)",
                    "paraphrases", "hit rate", "(similarity alone)"):  # fmt: skip
            table.add_column(col, justify="right" if col != "category" else "left")
        by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_cat[r["category"]].append(r)
        for cat in [*sorted(by_cat), "ALL"]:
            sub = rows if cat == "ALL" else by_cat[cat]
            wrong, hit, n_nm, n_pp = rates(sub, threshold)
            wrong0, hit0, _, _ = rates(sub, threshold, verifier=False)
            table.add_row(
                cat, str(n_nm), f"{wrong:.1%}", f"{wrong0:.1%}", str(n_pp), f"{hit:.1%}",
                f"{hit0:.1%}", style="bold" if cat == "ALL" else None,
            )  # fmt: skip
        console.print(table)
    guards: dict[str, int] = defaultdict(int)
    for r in records:
        if r["outcome"] == Outcome.GUARDED.value and r["kind"] == "near_miss":
            guards[r["guard"] or "?"] += 1
    console.print(
        "near-misses refused, by verifier rule: "
        + ", ".join(f"{k} {v}" for k, v in sorted(guards.items(), key=lambda kv: -kv[1]))
    )


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = [round(0.70 + i * 0.01, 2) for i in range(30)]
    fig, axes = plt.subplots(1, len(PIPELINES), figsize=(5 * len(PIPELINES), 4), sharey=True)
    for ax, pipeline in zip(axes, PIPELINES, strict=True):
        rows = [r for r in records if r["pipeline"] == pipeline]
        for verifier, style in ((True, "-"), (False, ":")):
            curve = [rates(rows, t, verifier) for t in thresholds]
            label = "verified" if verifier else "similarity alone"
            ax.plot(thresholds, [c[0] for c in curve], "r" + style, label=f"wrong ({label})")
            ax.plot(thresholds, [c[1] for c in curve], "g" + style, label=f"hits ({label})")
        ax.axhline(0.01, color="grey", lw=0.8)
        ax.set_title(pipeline)
        ax.set_xlabel("threshold (cosine similarity)")
    axes[0].set_ylabel("share of near-misses served / paraphrases served")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 pairs per category")
    parser.add_argument("--threshold", type=float, default=None, help="default: the engine's")
    args = parser.parse_args()
    console = new_console()
    console.print(f"[bold]{argv_line()}[/]")
    print_machine(console, machine())
    pairs = load_pairs()
    if args.quick:
        rng = random.Random(7)
        by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in pairs:
            by_cat[p["category"]].append(p)
        pairs = [p for rows in by_cat.values() for p in rng.sample(rows, min(20, len(rows)))]
    console.print(f"{len(pairs)} pairs from {', '.join(p.name for p in CORPUS)}")
    threshold = args.threshold if args.threshold is not None else CacheConfig().threshold
    with private_redis(console) as url:
        records = measure(url, pairs, console)
    report(records, threshold, console)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "safety_records.json").write_text(json.dumps(records))
    plot(records, RESULTS_DIR / "safety.png")
    console.print(f"plot: {RESULTS_DIR / 'safety.png'}; records: safety_records.json")
    save_console(console, "safety.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
