"""Calibrated thresholds from shadow verdicts versus static thresholds, on QQP.

The question: does a tenant that runs in shadow mode first, then goes live at the
threshold `CacheEngine.calibrate` recommends, get more hits at the same wrong-serve rate
than a tenant with a hand-picked static threshold? The goal stated in the issue: at an
equal wrong-serve rate, calibrated should reach at least 1.5x the hit rate of the best
static threshold.

Set-up (everything through `CacheEngine.request / lookup / store`, MiniLM vectors):

* Questions are grouped into duplicate groups: connected components over the pairs with
  ``label == 1``. The fake LLM answers a question with its group id, so a served answer
  is right exactly when the cached question is in the asker's group.
* The pairs are split into halves A and B by a seeded shuffle.
* **Shadow (half A).** A tenant in shadow mode (``promotion_threshold=None``: nothing
  served) gets, for each pair, ``text_a`` (a miss: its answer is stored) then ``text_b``:
  the shadow lookup parks the nearest candidate (similarity >= ``shadow_floor``), and
  storing the fresh answer (``text_b``'s group) records a verdict (same group?).
  ``text_a`` is stored without a lookup, so the verdicts judge the same kind of query
  the live half asks (``text_b`` against cached ``text_a``); ``--all-verdicts`` looks
  ``text_a`` up too. Disagreeing verdicts also raise the candidate entry's own floor
  (``entry_floors``, on by default).
* **Calibration.** ``engine.calibrate(tenant)`` at targets 1 %, 2 % and 5 % (the upper
  Clopper-Pearson bound on wrong / served must stay under the target).
* **Live (half B).** A fresh namespace holds every ``text_a`` of half B; each ``text_b``
  is asked once. One live lookup at threshold 0 gives every query's nearest candidate
  (similarity and answer), from which hits and wrong serves are computed offline for
  each static threshold 0.80 ... 0.99. The calibrated thresholds are also run for real
  through live engine lookups, and compared with the offline figures. The index is not
  written during the live pass (misses are not stored), so the offline computation is
  exact.
* **Entry floors.** Half B's ``text_b`` questions are also asked against half A's cache,
  where the shadow phase raised floors: once with the floors, once after removing them,
  so their effect on unseen questions is measured (not on the questions that raised them).

Rates: ``wrong/all`` = wrong serves / all queries (what users see), ``wrong/hits`` =
wrong serves / served (what ``target_error`` bounds), ``hit rate`` = served / all.

The QQP texts (``/work/shared/data/qqp_dev.jsonl`` or ``$SEMCACHE_QQP``) never enter the
repository; the vector cache under ``benchmarks/.cache/calib_*.npy`` holds numbers only.

    python benchmarks/calibration.py               # full run (~25 min on a busy 2-core box)
    python benchmarks/calibration.py --limit 4000  # a quick run on 4,000 pairs (prints only)
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import numpy as np
import qqp
import redis
from rich.console import Console
from rich.table import Table

from semcache_core import CacheEngine
from semcache_core.calibration import Calibration, CurvePoint, calibrate
from semcache_core.core.rules import SIMILARITY_EPSILON, Outcome
from semcache_core.embedding import CallableEmbedder

TARGETS = (0.01, 0.02, 0.05)
STATIC = tuple(round(0.80 + 0.01 * i, 2) for i in range(20))  # 0.80 ... 0.99
GOAL_RATIO = 1.5
FLOOR_STATIC = (0.80, 0.85, 0.90, 0.95, 0.99)  # floors measured at these static thresholds too
CONFIDENCE = 0.95  # the engine's default one-sided confidence
SHADOW_TENANT = "shadow-tenant"
LIVE_TENANT = "live-tenant"
ERR = Console(stderr=True)


# -- vectors ---------------------------------------------------------------------------------
def vectors_for(data: qqp.QQP, rows: Iterable[int]) -> np.ndarray:
    """Normalized MiniLM vectors of ``data.texts`` (rows not asked for may be NaN).

    Kept in ``benchmarks/.cache/calib_<data digest>_minilm.npy``. When the other QQP
    benchmarks already computed the same vectors (``qqp_<digest>_minilm_plain.npy``:
    same model, same text, same normalization), their rows seed this file instead of
    running the model again; the rest is embedded here.
    """
    qqp.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = qqp.CACHE_DIR / f"calib_{data.digest}_minilm.npy"
    if path.is_file():
        matrix = np.load(path)
    else:
        matrix = np.full((len(data.texts), qqp.DIMS), np.nan, dtype=np.float32)
        shared = qqp.CACHE_DIR / f"qqp_{data.digest}_minilm_plain.npy"
        if shared.is_file():
            seed = np.load(shared, mmap_mode="r")
            if seed.shape == matrix.shape:
                matrix[:] = seed
                ERR.print(f"[dim]vectors seeded from {shared.name}[/]")
    wanted = np.unique(np.fromiter(rows, dtype=np.int64))
    missing = wanted[np.isnan(matrix[wanted, 0])] if len(wanted) else wanted
    if len(missing):
        ERR.print(f"embedding {len(missing):,} texts with MiniLM (cached in {path.name})")
        matrix[missing] = qqp._embed_rows([data.texts[i] for i in missing], "texts")
    if len(missing) or not path.is_file():
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, matrix)
        tmp.replace(path)
    return matrix


def spot_check(data: qqp.QQP, matrix: np.ndarray, rows: Sequence[int]) -> float:
    """Largest difference between cached vectors and MiniLM run now, on a few rows."""
    from semcache_core.embedding import minilm

    fresh = np.asarray(minilm().embed_many([data.texts[i] for i in rows]), dtype=np.float32)
    return float(np.abs(fresh - matrix[list(rows)]).max())


# -- the engine ------------------------------------------------------------------------------
def make_engine(url: str, namespace: str, data: qqp.QQP, matrix: np.ndarray) -> CacheEngine:
    index = data.index

    def embed(text: str) -> list[float]:
        return matrix[index[text]].tolist()  # type: ignore[no-any-return]

    return CacheEngine(
        url,
        embedder=CallableEmbedder(embed, model_id="table:all-MiniLM-L6-v2"),
        namespace=namespace,
        judge="text",
        verdict_limit=10_000_000,  # keep every verdict (the default caps at 10,000)
        socket_timeout=10.0,  # a busy 2-core machine must not turn lookups into errors
        connect_timeout=10.0,
        policy_refresh=3600.0,  # one process: set_policy refreshes its own copy at once
        dims=qqp.DIMS,
    )


def answer(data: qqp.QQP, i: int) -> str:
    return f"group-{data.group[i]}"


def _first(shadow: ShadowRun, min_samples: int) -> float:
    """Observed error of the highest threshold backed by ``min_samples`` verdicts."""
    curve = shadow.calibrations[TARGETS[0]].curve
    point = next((p for p in curve if p.served >= min_samples), None)
    return point.error_rate if point else 0.0


def check_faults(faults: int, total: int, phase: str) -> None:
    """Lookups that ended in an error or bypass count as misses, as the engine serves them;
    a handful is reported, more than 0.1 % makes the figures meaningless."""
    if faults > max(10, total // 1000):
        raise SystemExit(f"error: {phase}: {faults:,} of {total:,} calls failed; results invalid")
    if faults:
        ERR.print(f"[yellow]{phase}: {faults} of {total:,} calls failed (served as misses)[/]")


def progress(label: str, done: int, total: int, started: float) -> None:
    if done % 5000 == 0 or done == total:
        rate = done / max(time.perf_counter() - started, 1e-9)
        ERR.print(f"[dim]  {label}: {done:,}/{total:,} ({rate:.0f}/s)[/]")


# -- phases ----------------------------------------------------------------------------------
@dataclass
class ShadowRun:
    asks: int = 0
    exact_hits: int = 0
    faults: int = 0
    verdicts: int = 0
    disagreed: int = 0
    floors: int = 0
    seconds: float = 0.0
    calibrations: dict[float, Calibration] = field(default_factory=dict)
    extra: float | None = None  # a target beyond TARGETS, added when those found nothing
    lowest_bound: CurvePoint | None = None

    def label(self, target: float) -> str:
        return f"calibrated {pct(target)}" + (" (extra)" if target == self.extra else "")


def run_shadow(
    engine: CacheEngine,
    data: qqp.QQP,
    pairs: Sequence[qqp.Pair],
    min_samples: int,
    all_verdicts: bool = False,
) -> ShadowRun:
    out = ShadowRun()
    engine.set_policy(
        SHADOW_TENANT,
        semantic="shadow",
        promotion_threshold=None,
        min_samples=min_samples,
        target_error=TARGETS[0],
    )
    started = time.perf_counter()
    for n, pair in enumerate(pairs, 1):
        for i in (pair.a, pair.b):
            req = engine.request(data.texts[i], tenant=SHADOW_TENANT)
            text = answer(data, i)
            out.asks += 1
            if i == pair.a and not all_verdicts:
                # text_a is the cached side, as in the live half: stored without a lookup,
                # so verdicts come from text_b questions only (the population served live).
                out.faults += not engine.store(req, text.encode(), text=text)
                continue
            result = engine.lookup(req)
            out.faults += result.outcome in (Outcome.ERROR, Outcome.BYPASS)
            if result.hit:  # only exact hits: nothing is served in shadow
                out.exact_hits += 1
                continue
            out.faults += not engine.store(req, text.encode(), text=text)
        progress("shadow (half A)", n, len(pairs), started)
    out.seconds = time.perf_counter() - started
    check_faults(out.faults, 2 * len(pairs), "shadow")
    verdicts = engine.verdicts(SHADOW_TENANT)
    out.verdicts = len(verdicts)
    out.disagreed = sum(not v.agreed for v in verdicts)
    out.floors = count_floors(engine)
    for target in TARGETS:
        engine.set_policy(SHADOW_TENANT, target_error=target)
        out.calibrations[target] = engine.calibrate(SHADOW_TENANT, apply=False)
    if any(c.threshold is None for c in out.calibrations.values()):
        # For the live comparison to have something to compare: the smallest target (in
        # steps of 5 %) for which calibration does recommend a threshold, reported as extra.
        for step in range(2, 20):
            target = round(0.05 * step, 2)
            if (
                calibrate(
                    verdicts, target_error=target, min_samples=min_samples, confidence=CONFIDENCE
                ).threshold
                is not None
            ):
                engine.set_policy(SHADOW_TENANT, target_error=target)
                out.calibrations[target] = engine.calibrate(SHADOW_TENANT, apply=False)
                out.extra = target
                break
    out.lowest_bound = min(
        (p for p in out.calibrations[TARGETS[0]].curve if p.served >= min_samples),
        key=lambda p: p.upper_bound,
        default=None,
    )
    return out


def count_floors(engine: CacheEngine) -> int:
    client = engine._store.client  # the benchmark's private Redis
    keys = list(client.scan_iter(match=engine.layout.scan_pattern(), count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hexists(key, "min_sim")
    return sum(bool(x) for x in pipe.execute())


def strip_floors(engine: CacheEngine) -> int:
    client = engine._store.client
    keys = list(client.scan_iter(match=engine.layout.scan_pattern(), count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hdel(key, "min_sim")
    return sum(int(x) for x in pipe.execute())


@dataclass
class Pass:
    """One lookup per query: served?, similarity of the nearest candidate, right?"""

    served: np.ndarray  # bool
    exact: np.ndarray  # bool
    similarity: np.ndarray  # float, NaN when there was no candidate
    correct: np.ndarray  # bool; False when nothing was served
    seconds: float
    faults: int = 0  # lookups that ended in an error or bypass (served as misses)

    def at(self, threshold: float) -> tuple[int, int]:
        """(hits, wrong) had the engine served at ``threshold`` (the same rule as
        `semcache_core.core.rules.is_semantic_hit`)."""
        hit = self.served & (
            self.exact
            | (np.nan_to_num(self.similarity, nan=-1.0) + SIMILARITY_EPSILON >= threshold)
        )
        return int(hit.sum()), int((hit & ~self.correct).sum())


def ask_all(
    engine: CacheEngine, tenant: str, data: qqp.QQP, queries: Sequence[int], label: str
) -> Pass:
    n = len(queries)
    served = np.zeros(n, bool)
    exact = np.zeros(n, bool)
    sim = np.full(n, np.nan)
    correct = np.zeros(n, bool)
    started = time.perf_counter()
    faults = 0
    for k, i in enumerate(queries):
        result = engine.lookup(engine.request(data.texts[i], tenant=tenant))
        faults += result.outcome in (Outcome.ERROR, Outcome.BYPASS)
        if result.similarity is not None:
            sim[k] = result.similarity
        if result.hit:
            served[k] = True
            exact[k] = result.layer == "exact"
            correct[k] = result.value.decode() == answer(data, i)
        progress(label, k + 1, n, started)
    check_faults(faults, n, label)
    return Pass(served, exact, sim, correct, time.perf_counter() - started, faults)


def fill(engine: CacheEngine, tenant: str, data: qqp.QQP, rows: Iterable[int]) -> int:
    written = 0
    for i in dict.fromkeys(rows):
        text = answer(data, i)
        written += engine.store(engine.request(data.texts[i], tenant=tenant), text.encode())
    return written


# -- reporting -------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    threshold: float | None
    hits: int
    wrong: int
    queries: int
    note: str = ""

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0

    @property
    def wrong_all(self) -> float:
        return self.wrong / self.queries if self.queries else 0.0

    @property
    def wrong_hits(self) -> float:
        return self.wrong / self.hits if self.hits else 0.0


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def rows_table(title: str, rows: Sequence[Row]) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("policy", "left"),
        ("threshold", "right"),
        ("hits", "right"),
        ("wrong", "right"),
        ("hit rate", "right"),
        ("wrong/all", "right"),
        ("wrong/hits", "right"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.label,
            "-" if r.threshold is None else f"{r.threshold:.4f}",
            f"{r.hits:,}",
            f"{r.wrong:,}",
            pct(r.hit_rate),
            pct(r.wrong_all),
            pct(r.wrong_hits),
            r.note,
        )
    return table


def frontier(p: Pass, budget_wrong: int) -> tuple[float, int, int]:
    """The best static threshold of any value (not just the 0.01 grid) whose wrong serves
    stay at or below ``budget_wrong``: (threshold, hits, wrong)."""
    sims = np.nan_to_num(p.similarity, nan=-1.0)
    sims = np.where(p.exact, 2.0, sims)
    order = np.argsort(-sims, kind="stable")
    served = p.served[order]
    wrong = np.cumsum(served & ~p.correct[order])
    hits = np.cumsum(served)
    best = (1.0, 0, 0)
    s_sorted = sims[order]
    for k in range(len(order)):
        # Only cut between distinct similarities (a threshold serves all ties).
        if k + 1 < len(order) and s_sorted[k + 1] == s_sorted[k]:
            continue
        if wrong[k] <= budget_wrong and hits[k] > best[1]:
            best = (float(min(s_sorted[k], 1.0)), int(hits[k]), int(wrong[k]))
    return best


def goal_rows(
    calibrated: Sequence[Row], static: Sequence[Row], p: Pass, title: str
) -> tuple[Table, list[dict[str, Any]]]:
    table = Table(title=title, title_justify="left")
    for name in (
        "policy",
        "hit rate",
        "wrong/all",
        "best static (grid) at <= wrong",
        "ratio",
        "best static (any t) at <= wrong",
        "ratio",
        f">= {GOAL_RATIO}x?",
    ):
        table.add_column(name, justify="left" if name == "policy" else "right")
    out = []
    for c in calibrated:
        grid = [s for s in static if s.wrong <= c.wrong]
        best = max(grid, key=lambda s: s.hits) if grid else None
        t_any, h_any, _ = frontier(p, c.wrong)
        r_grid = c.hits / best.hits if best and best.hits else float("inf")
        r_any = c.hits / h_any if h_any else float("inf")
        met = min(r_grid, r_any) >= GOAL_RATIO
        table.add_row(
            c.label,
            pct(c.hit_rate),
            pct(c.wrong_all),
            f"t={best.threshold:.2f}: {pct(best.hit_rate)}" if best else "none",
            f"{r_grid:.2f}x" if best else "-",
            f"t={t_any:.4f}: {pct(h_any / c.queries)}",
            f"{r_any:.2f}x",
            "yes" if met else "no",
        )
        out.append(
            {
                "policy": c.label,
                "ratio_grid": r_grid,
                "ratio_any": r_any,
                "best_grid": best.threshold if best else None,
                "best_any": t_any,
                "met": met,
            }
        )
    return table, out


def plot(
    path: Path,
    static_b: Sequence[Row],
    calibrated_b: Sequence[Row],
    static_a: Sequence[Row],
    floors_a: Sequence[Row],
    n_pairs: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.plot(
        [100 * r.wrong_all for r in static_b],
        [100 * r.hit_rate for r in static_b],
        "o-",
        color="tab:blue",
        ms=3,
        label="static thresholds 0.80-0.99 (half B cache)",
    )
    for r in static_b:
        if round(r.threshold * 100) % 5 == 0:  # type: ignore[operator]
            ax.annotate(
                f"{r.threshold:.2f}",
                (100 * r.wrong_all, 100 * r.hit_rate),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
                color="tab:blue",
            )
    ax.plot(
        [100 * r.wrong_all for r in calibrated_b],
        [100 * r.hit_rate for r in calibrated_b],
        "*",
        color="tab:red",
        ms=14,
        label="calibrated (shadow on half A), engine live run",
    )
    for r in calibrated_b:
        ax.annotate(
            f"{r.label}\nt={r.threshold:.3f}",
            (100 * r.wrong_all, 100 * r.hit_rate),
            textcoords="offset points",
            xytext=(8, 2),
            fontsize=8,
            color="tab:red",
        )
    if static_a:
        ax.plot(
            [100 * r.wrong_all for r in static_a],
            [100 * r.hit_rate for r in static_a],
            "--",
            color="tab:gray",
            lw=1,
            label="static, half A cache (floors removed)",
        )
        ax.plot(
            [100 * r.wrong_all for r in floors_a],
            [100 * r.hit_rate for r in floors_a],
            "D",
            color="tab:green",
            ms=6,
            label="+ entry floors, half A cache (calibrated; static .80 .85 .90 .95 .99)",
        )
    ax.set_xlabel("wrong serves / all queries (%)")
    ax.set_ylabel("hit rate (%)")
    ax.set_title(f"QQP, {n_pairs:,} pairs: calibrated vs static thresholds (MiniLM)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use only N pairs (quick run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the A/B split")
    parser.add_argument(
        "--min-samples",
        type=int,
        default=None,
        help="served verdicts a calibrated threshold needs (default 500, fewer with --limit)",
    )
    parser.add_argument("--no-floors", action="store_true", help="skip the entry-floor passes")
    parser.add_argument(
        "--all-verdicts",
        action="store_true",
        help="look text_a up too in shadow, so its candidates are judged as well (default: "
        "text_a is only stored, verdicts come from text_b, the kind of query asked live)",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="write benchmarks/results/calibration.png and .txt (always done without --limit)",
    )
    parser.add_argument(
        "--redis-url", default=None, help="use this Redis (default: a private one)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.save = args.save or args.limit is None
    t_start = time.perf_counter()
    console = common.new_console()
    data = qqp.load()  # exits 2 with a clear message when the data file is missing
    info = common.machine()
    common.print_machine(console, info)
    console.print(f"[dim]{common.argv_line()}[/]")

    order = list(range(len(data.pairs)))
    random.Random(args.seed).shuffle(order)
    if args.limit is not None:
        order = order[: max(2, args.limit)]
    half = len(order) // 2
    pairs_a = [data.pairs[k] for k in order[:half]]
    pairs_b = [data.pairs[k] for k in order[half:]]
    args.min_samples = min_samples = args.min_samples or (500 if len(order) >= 20_000 else 100)
    rows_needed = {i for p in pairs_a + pairs_b for i in (p.a, p.b)}
    matrix = vectors_for(data, rows_needed)
    drift = spot_check(data, matrix, sorted(rows_needed)[:8])
    console.print(
        f"{len(order):,} pairs ({sum(data.pairs[k].label for k in order):,} duplicates), "
        f"split {len(pairs_a):,} (A, shadow) / {len(pairs_b):,} (B, live) by seed {args.seed}; "
        f"{len(set(data.group)):,} duplicate groups over {len(data.texts):,} questions; "
        f"min_samples={min_samples}; cached vectors vs MiniLM now: max |diff| {drift:.1e}"
    )

    run_id = uuid.uuid4().hex[:8]
    server = (
        common.private_redis(console) if args.redis_url is None else nullcontext(args.redis_url)
    )
    with server as url:
        ns_a, ns_b = f"calib-a-{run_id}", f"calib-b-{run_id}"
        engine_a = make_engine(url, ns_a, data, matrix)
        engine_b = make_engine(url, ns_b, data, matrix)
        try:
            result = _run(console, args, data, matrix, engine_a, engine_b, pairs_a, pairs_b)
        finally:
            for engine in (engine_a, engine_b):
                _cleanup(engine, (SHADOW_TENANT, LIVE_TENANT))
                engine.close()
        result["seconds"] = time.perf_counter() - t_start

    saved = "; saved benchmarks/results/calibration.png and .txt" if args.save else ""
    console.print(f"[dim]elapsed {result['seconds']:.0f} s{saved}[/]")
    if args.save:
        common.save_console(console, "calibration.txt")
    return 0


def _cleanup(engine: CacheEngine, tenants: Sequence[str]) -> None:
    try:
        for tenant in tenants:
            engine.clear_verdicts(tenant)
        engine.drop_index()
        client = engine._store.client
        client.delete(engine.layout.policy_key, engine.layout.audit_key)
    except (redis.RedisError, OSError) as exc:  # a private server is stopped anyway
        ERR.print(f"[yellow]cleanup of {engine.config.namespace} failed: {exc}[/]")


def _run(
    console: Console,
    args: argparse.Namespace,
    data: qqp.QQP,
    matrix: np.ndarray,
    engine_a: CacheEngine,
    engine_b: CacheEngine,
    pairs_a: Sequence[qqp.Pair],
    pairs_b: Sequence[qqp.Pair],
) -> dict[str, Any]:
    min_samples = args.min_samples
    result: dict[str, Any] = {"argv": common.argv_line(), "machine": common.machine()}

    # 1. shadow on half A
    shadow = run_shadow(engine_a, data, pairs_a, min_samples, args.all_verdicts)
    console.print(
        f"shadow on half A: {shadow.asks:,} asks ({shadow.exact_hits:,} exact hits) in "
        f"{shadow.seconds:.0f} s; {shadow.verdicts:,} verdicts, {shadow.disagreed:,} "
        f"disagreeing ({pct(shadow.disagreed / max(shadow.verdicts, 1))}); "
        f"{shadow.floors:,} entries got a raised floor; {shadow.faults} failed calls"
    )
    cal_table = Table(title="Calibration from the shadow verdicts", title_justify="left")
    for name in ("target", "threshold", "served", "wrong", "observed", "upper bound", "reason"):
        cal_table.add_column(name, justify="left" if name == "reason" else "right")
    for target, cal in shadow.calibrations.items():
        cal_table.add_row(
            pct(target) + (" (extra)" if target == shadow.extra else ""),
            "none" if cal.threshold is None else f"{cal.threshold:.4f}",
            f"{cal.served:,}",
            f"{cal.wrong:,}",
            pct(cal.observed_error),
            pct(cal.upper_bound),
            cal.reason,
        )
    console.print(cal_table)
    low = shadow.lowest_bound
    if low is not None:
        console.print(
            f"lowest upper bound of any threshold with >= {min_samples} verdicts: "
            f"{pct(low.upper_bound)} at {low.threshold:.4f} ({low.wrong:,} wrong of "
            f"{low.served:,}); the first threshold with {min_samples} verdicts already has "
            f"{pct(_first(shadow, min_samples))} "
            "observed error"
        )
    if shadow.extra is not None:
        console.print(
            f"no threshold for some of the targets {', '.join(pct(t) for t in TARGETS)}; "
            f"{pct(shadow.extra)} is the smallest target (in 5 % steps) with a recommendation "
            "and is run as an extra policy below (not part of the goal)"
        )
    result["shadow"] = {
        "asks": shadow.asks,
        "verdicts": shadow.verdicts,
        "disagreed": shadow.disagreed,
        "floors": shadow.floors,
        "seconds": shadow.seconds,
        "calibrations": {str(t): c.evidence() for t, c in shadow.calibrations.items()},
        "extra_target": shadow.extra,
    }

    # 2. live on half B: fill, one pass at threshold 0, static thresholds offline
    queries = [p.b for p in pairs_b]
    started = time.perf_counter()
    written = fill(engine_b, LIVE_TENANT, data, (p.a for p in pairs_b))
    fill_s = time.perf_counter() - started
    engine_b.set_policy(LIVE_TENANT, semantic="live", threshold=0.0, promotion_threshold=None)
    base = ask_all(engine_b, LIVE_TENANT, data, queries, "live pass at threshold 0 (half B)")
    console.print(
        f"live on half B: {written:,} text_a entries written in {fill_s:.0f} s; "
        f"{len(queries):,} text_b queries, nearest candidate of each in {base.seconds:.0f} s "
        f"({int(base.exact.sum()):,} exact matches, {base.faults} failed lookups)"
    )
    n = len(queries)
    static_b = [Row(f"static {t:.2f}", t, *base.at(t), n) for t in STATIC]
    calibrated_b: list[Row] = []
    for target, cal in shadow.calibrations.items():
        label = shadow.label(target)
        if cal.threshold is None:
            console.print(f"[yellow]{label}: no threshold ({cal.reason})[/]")
            continue
        engine_b.set_policy(LIVE_TENANT, threshold=cal.threshold)
        real = ask_all(engine_b, LIVE_TENANT, data, queries, f"live run, {label}")
        hits, wrong = int(real.served.sum()), int((real.served & ~real.correct).sum())
        off_hits, off_wrong = base.at(cal.threshold)
        agree = (
            "engine = offline"
            if (hits, wrong) == (off_hits, off_wrong)
            else (f"offline said {off_hits:,} hits / {off_wrong:,} wrong")
        )
        if real.faults or base.faults:
            agree += f" ({real.faults} + {base.faults} failed lookups, served as misses)"
        ok = "within target" if wrong <= target * hits else "ABOVE target"
        calibrated_b.append(Row(label, cal.threshold, hits, wrong, n, f"{agree}; {ok}"))
    console.print(
        rows_table(
            f"Half B live: {n:,} queries against {written:,} cached questions "
            "(static: offline from the nearest-candidate pass; calibrated: engine live runs)",
            [*calibrated_b, *static_b],
        )
    )
    goal_b, goal_b_data = goal_rows(
        calibrated_b,
        static_b,
        base,
        f"Goal: calibrated hit rate >= {GOAL_RATIO}x the best static threshold at an equal "
        "or lower wrong-serve rate (half B)",
    )
    console.print(goal_b)
    result["live_b"] = {
        "queries": n,
        "cached": written,
        "static": [r.__dict__ for r in static_b],
        "calibrated": [r.__dict__ for r in calibrated_b],
        "goal": goal_b_data,
    }

    # 3. entry floors: half B's questions against half A's cache (floors from shadow)
    static_a: list[Row] = []
    floors_a: list[Row] = []
    if not args.no_floors and shadow.floors:
        engine_a.set_policy(SHADOW_TENANT, semantic="live", threshold=0.0)
        with_floors = ask_all(engine_a, SHADOW_TENANT, data, queries, "half A cache, floors")
        removed = strip_floors(engine_a)
        without = ask_all(engine_a, SHADOW_TENANT, data, queries, "half A cache, no floors")
        static_a = [Row(f"static {t:.2f}", t, *without.at(t), n) for t in STATIC]
        rows: list[Row] = []
        for target, cal in shadow.calibrations.items():
            if cal.threshold is None:
                continue
            label = shadow.label(target)
            h0, w0 = without.at(cal.threshold)
            h1, w1 = with_floors.at(cal.threshold)
            rows.append(Row(f"{label}, no floors", cal.threshold, h0, w0, n))
            floors_a.append(Row(f"{label} + floors", cal.threshold, h1, w1, n))
            rows.append(floors_a[-1])
        for t in FLOOR_STATIC:
            h0, w0 = without.at(t)
            h1, w1 = with_floors.at(t)
            rows.append(Row(f"static {t:.2f}, no floors", t, h0, w0, n))
            floors_a.append(Row(f"static {t:.2f} + floors", t, h1, w1, n))
            rows.append(floors_a[-1])
        blocked = int((without.served & ~with_floors.served).sum())
        blocked_wrong = int((without.served & ~with_floors.served & ~without.correct).sum())
        console.print(
            rows_table(
                f"Entry floors: half B's {n:,} queries against half A's cache "
                f"({shadow.floors:,} floored entries; floors removed: {removed:,})",
                rows,
            )
        )
        console.print(
            f"floors blocked {blocked:,} of the {n:,} nearest candidates at any threshold, "
            f"{blocked_wrong:,} of them wrong ({pct(blocked_wrong / max(blocked, 1))})"
        )
        goal_a, goal_a_data = goal_rows(
            floors_a,
            static_a,
            without,
            "With entry floors: policy + floors vs the best static threshold without floors "
            "(half A cache)",
        )
        console.print(goal_a)
        result["floors_a"] = {
            "static": [r.__dict__ for r in static_a],
            "calibrated_floors": [r.__dict__ for r in floors_a],
            "rows": [r.__dict__ for r in rows],
            "blocked": blocked,
            "blocked_wrong": blocked_wrong,
            "goal": goal_a_data,
        }
    elif not shadow.floors:
        console.print("entry floors: no entry got a floor, nothing to measure")

    if args.save:
        common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        plot(
            common.RESULTS_DIR / "calibration.png",
            static_b,
            calibrated_b,
            static_a,
            floors_a,
            len(pairs_a) + len(pairs_b),
        )
    met = [g["met"] for g in result["live_b"]["goal"] if "extra" not in g["policy"]]
    verdict = "MET" if met and all(met) else "NOT MET"
    detail = (
        f"{sum(met)} of {len(met)} calibrated policies reach it"
        if met
        else "calibration recommended no threshold for " + ", ".join(pct(t) for t in TARGETS)
    )
    console.print(
        f"[bold]goal ({GOAL_RATIO}x the hit rate of the best static threshold at an equal "
        f"wrong-serve rate, half B): {verdict}[/] ({detail})"
    )
    result["goal_met"] = verdict == "MET"
    return result


if __name__ == "__main__":
    raise SystemExit(main())
