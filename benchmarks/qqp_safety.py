"""QQP: verified semantic hits, the true wrong-serve curve, and the default threshold.

Method (as `quality.py`, one model, without Redis): every unique ``text_a`` is stored;
a sample of the ``text_b`` never stored as a ``text_a`` is asked. A lookup takes the
``search_candidates`` (3) nearest stored questions by cosine similarity of the MiniLM
vectors (numpy, exact) and serves the first one that clears the threshold and, with the
verifier on, that ``verify(query, candidate, strictness)`` accepts: what
`SemanticEngine.lookup` does. QQP's duplicate groups (connected components of the
``label == 1`` pairs) say whether a serve is right.

QQP's labels are noisy: many served pairs QQP calls non-duplicates are paraphrases. So a
stratified random sample of the served pairs QQP calls wrong (verifier off and verifier
balanced, similarity bands, fixed seed) was judged by hand: ``same`` (the cached answer
answers the query) or ``different``. ``benchmarks/data/qqp_judged.jsonl`` holds only the
pair identifiers (indices into the unique texts in first-appearance order, and a hash of
the two texts), the stratum and the label, never the text. The estimated true
wrong-serve rate at a threshold is the sum over bands of (QQP-wrong serves in the band
above the threshold) x (judged fraction of them truly different) / queries. Its 95 %
interval comes from 2,000 draws: the asked questions resampled (bootstrap) and each
band's fraction drawn from its Jeffreys posterior Beta(k + 1/2, n - k + 1/2). Serves
QQP calls right are counted right (not judged).

Usage:
    python benchmarks/qqp_safety.py                # table, plot, recommendation
    python benchmarks/qqp_safety.py --print-sample # the pairs to judge (text on stdout)
    python benchmarks/qqp_safety.py --limit 3000   # fewer asked questions (smoke run)
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import common
import numpy as np
import qqp

from semcache_core.core import verify as verify_mod

THRESHOLDS: tuple[float, ...] = tuple(round(0.70 + 0.01 * i, 2) for i in range(29))
BANDS: tuple[tuple[float, float], ...] = (
    (0.70, 0.80),
    (0.80, 0.85),
    (0.85, 0.88),
    (0.88, 0.92),
    (0.92, 0.95),
    (0.95, 1.01),
)
# Pairs drawn per (mode, band): more near the likely default (0.80-0.92).
SAMPLE_SIZES: dict[str, tuple[int, ...]] = {
    "off": (15, 20, 20, 20, 15, 12),
    "balanced": (18, 30, 30, 30, 18, 12),
}
MODES: tuple[str, ...] = ("off", "lenient", "balanced", "strict")
JUDGED_MODES: tuple[str, ...] = ("off", "balanced")
CANDIDATES = 3
TARGET = 0.01
JUDGED = Path(__file__).resolve().parent / "data" / "qqp_judged.jsonl"
PLOT_NAME = "qqp_safety.png"
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img" / PLOT_NAME


def band_of(sim: float) -> int:
    for i, (lo, hi) in enumerate(BANDS):
        if lo - 1e-9 <= sim < hi:
            return i
    return -1


def band_label(i: int) -> str:
    lo, hi = BANDS[i]
    return f"{lo:.2f}+" if hi > 1 else f"{lo:.2f}-{hi:.2f}"


def pair_hash(query: str, candidate: str) -> str:
    return hashlib.sha256(f"{query}\x00{candidate}".encode()).hexdigest()[:16]


@dataclass
class Serves:
    """Per asked question, what one mode serves at the loosest threshold."""

    src: np.ndarray  # stored text index served, -1: none
    sim: np.ndarray  # its similarity (-1: none)
    right: np.ndarray  # QQP: same duplicate group

    def served(self, t: float) -> np.ndarray:
        return self.sim >= t - 1e-9

    def wrong(self, t: float) -> np.ndarray:
        return self.served(t) & ~self.right


def nearest(queries: np.ndarray, stored: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar stored rows per query (indices into stored, similarities)."""
    idx = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for s in range(0, len(queries), 1024):
        block = queries[s : s + 1024] @ stored.T
        part = np.argpartition(-block, k, axis=1)[:, :k]
        psims = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-psims, axis=1)
        idx[s : s + 1024] = np.take_along_axis(part, order, axis=1)
        sims[s : s + 1024] = np.take_along_axis(psims, order, axis=1)
    return idx, sims


def compute_serves(
    data: qqp.QQP, asked: Sequence[int], cand: np.ndarray, sims: np.ndarray
) -> dict[str, Serves]:
    """What each mode serves: the first of the candidates that clears the verifier."""
    lo = THRESHOLDS[0]
    out: dict[str, Serves] = {}
    for mode in MODES:
        src = np.full(len(asked), -1, dtype=np.int64)
        sim = np.full(len(asked), -1.0, dtype=np.float32)
        for qi, q in enumerate(asked):
            for j in range(cand.shape[1]):
                if sims[qi, j] < lo - 1e-9:
                    break
                c = int(cand[qi, j])
                if mode == "off" or verify_mod.verify(data.texts[q], data.texts[c], mode).ok:  # type: ignore[arg-type]
                    src[qi], sim[qi] = c, sims[qi, j]
                    break
        group = np.asarray(data.group)
        right = (src >= 0) & (group[np.maximum(src, 0)] == group[np.asarray(asked)])
        out[mode] = Serves(src, sim, right)
    return out


def draw_sample(
    data: qqp.QQP, asked: Sequence[int], serves: dict[str, Serves], seed: int
) -> list[dict[str, object]]:
    """A stratified random sample of QQP-wrong serves: (mode, band) strata."""
    rng = random.Random(seed)
    picked: dict[tuple[int, int], dict[str, object]] = {}
    for mode in JUDGED_MODES:
        sv = serves[mode]
        for b, size in enumerate(SAMPLE_SIZES[mode]):
            pool = [
                qi
                for qi in range(len(asked))
                if sv.src[qi] >= 0 and not sv.right[qi] and band_of(float(sv.sim[qi])) == b
            ]
            for qi in sorted(rng.sample(pool, min(size, len(pool)))):
                q, c = int(asked[qi]), int(sv.src[qi])
                row = picked.setdefault(
                    (q, c),
                    {
                        "query": q,
                        "candidate": c,
                        "hash": pair_hash(data.texts[q], data.texts[c]),
                        "similarity": round(float(sv.sim[qi]), 4),
                        "strata": [],
                    },
                )
                row["strata"].append(f"{mode}:{band_label(b)}")  # type: ignore[attr-defined]
    return sorted(picked.values(), key=lambda r: (r["similarity"], r["query"]))  # type: ignore[arg-type, return-value]


def load_judged(data: qqp.QQP) -> dict[tuple[int, int], dict[str, object]]:
    if not JUDGED.is_file():
        return {}
    out: dict[tuple[int, int], dict[str, object]] = {}
    for line in JUDGED.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        q, c = int(row["query"]), int(row["candidate"])
        if pair_hash(data.texts[q], data.texts[c]) != row["hash"]:
            raise SystemExit(f"error: {JUDGED} does not match this data file (pair {q}, {c})")
        out[(q, c)] = row
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass
class Estimate:
    point: np.ndarray  # per threshold, fraction of queries
    lo: np.ndarray
    hi: np.ndarray


def estimate(sv: Serves, k: Sequence[int], n: Sequence[int], draws: int, seed: int) -> Estimate:
    """True wrong-serve rate per threshold: QQP-wrong serves x judged fraction per band."""
    nq = len(sv.sim)
    bands = np.array([band_of(float(s)) if s >= 0 else -1 for s in sv.sim])
    # indicator[q, t, b]: query q is a QQP-wrong serve at threshold t in band b
    ind = np.zeros((nq, len(THRESHOLDS), len(BANDS)), dtype=np.float32)
    for ti, t in enumerate(THRESHOLDS):
        w = sv.wrong(t)
        for b in range(len(BANDS)):
            ind[:, ti, b] = w & (bands == b)
    frac = np.array([(kb / nb) if nb else 1.0 for kb, nb in zip(k, n, strict=True)])
    counts = ind.sum(axis=0)  # (T, B)
    point = counts @ frac / nq
    rng = np.random.default_rng(seed)
    flat = ind.reshape(nq, -1)
    reps = np.empty((draws, len(THRESHOLDS)))
    for r0 in range(0, draws, 250):
        m = min(250, draws - r0)
        weights = rng.multinomial(nq, np.full(nq, 1.0 / nq), size=m).astype(np.float32)
        boot = (weights @ flat).reshape(m, len(THRESHOLDS), len(BANDS))
        p = np.stack(
            [rng.beta(kb + 0.5, nb - kb + 0.5, size=m) for kb, nb in zip(k, n, strict=True)],
            axis=1,
        )
        reps[r0 : r0 + m] = np.einsum("mtb,mb->mt", boot, p) / nq
    return Estimate(point, np.percentile(reps, 2.5, axis=0), np.percentile(reps, 97.5, axis=0))


def plot(
    serves: dict[str, Serves], est: dict[str, Estimate], nq: int, path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    th = np.array(THRESHOLDS)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = {
        "off": "tab:red",
        "lenient": "tab:orange",
        "balanced": "tab:blue",
        "strict": "tab:green",
    }
    for mode in MODES:
        hr = [serves[mode].served(t).sum() / nq * 100 for t in THRESHOLDS]
        name = "verifier off (static threshold)" if mode == "off" else f"verifier {mode}"
        axes[0].plot(th, hr, marker=".", color=colors[mode], label=name)
    axes[0].set_title("hit rate")
    axes[0].set_ylabel("% of queries served from the cache")
    for mode, e in est.items():
        name = "verifier off" if mode == "off" else f"verifier {mode}"
        qqp_wrong = [serves[mode].wrong(t).sum() / nq * 100 for t in THRESHOLDS]
        axes[1].plot(th, qqp_wrong, linestyle=":", color=colors[mode], label=f"{name}: QQP labels")
        axes[1].plot(
            th, e.point * 100, marker=".", color=colors[mode], label=f"{name}: estimated true"
        )
        axes[1].fill_between(th, e.lo * 100, e.hi * 100, color=colors[mode], alpha=0.15)
    axes[1].axhline(
        TARGET * 100, color="grey", linestyle="--", linewidth=1, label="1 % of queries"
    )
    axes[1].set_title("wrong serves (band: 95 % interval)")
    axes[1].set_ylabel("% of queries")
    axes[1].set_ylim(0, 12)
    for ax in axes:
        ax.set_xlabel("threshold (cosine similarity)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=12000, help="asked text_b (0: all)")
    parser.add_argument("--seed", type=int, default=11, help="which text_b are asked")
    parser.add_argument("--sample-seed", type=int, default=2024, help="the judged sample")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--print-sample", action="store_true", help="print the pairs to judge")
    parser.add_argument("--label", default="qqp_safety")
    parser.add_argument(
        "--all-judged",
        action="store_true",
        help="per band, use every judged pair this run still serves (QQP-wrong), not only "
        "the pairs its own stratified draw picks: after a verifier change the draw picks "
        "new pairs, while most judged ones are still served",
    )
    args = parser.parse_args(argv)

    data = qqp.load()  # exits 2 when the data file is missing
    # The verifier is pure, and keeps the parts of its last 4,096 texts; the 50,000 stored
    # questions recur as candidates far apart, so this run keeps them all.
    verify_mod._features = functools.lru_cache(maxsize=None)(verify_mod.features)
    stored = list(dict.fromkeys(p.a for p in data.pairs))
    all_a = set(stored)
    eligible = list(dict.fromkeys(p.b for p in data.pairs if p.b not in all_a))
    rng = random.Random(args.seed)
    asked = rng.sample(eligible, args.limit) if 0 < args.limit < len(eligible) else eligible
    vectors = qqp.VectorStore(data, "plain")
    vectors.ensure([*stored, *asked])
    stored_arr = np.asarray(stored)
    cand_pos, sims = nearest(vectors.matrix[asked], vectors.matrix[stored_arr], CANDIDATES)
    cand = stored_arr[cand_pos]
    serves = compute_serves(data, asked, cand, sims)
    nq = len(asked)

    sample = draw_sample(data, asked, serves, args.sample_seed)
    if args.print_sample:
        for row in sample:
            q, c = int(row["query"]), int(row["candidate"])  # type: ignore[call-overload]
            print(json.dumps({**row, "q_text": data.texts[q], "c_text": data.texts[c]}))
        return 0

    console = common.new_console()
    console.print(f"[bold]QQP: verified hits and the default threshold[/]  ({common.argv_line()})")
    info = common.machine()
    common.print_machine(console, info)
    console.print(
        f"{len(stored):,} text_a stored; {nq:,} of {len(eligible):,} text_b never stored "
        f"asked (seed {args.seed}); {CANDIDATES} nearest candidates per lookup."
    )

    judged = load_judged(data)
    missing = [r for r in sample if (r["query"], r["candidate"]) not in judged]
    if missing and not args.all_judged:
        console.print(
            f"[yellow]{len(missing)} of the {len(sample)} sampled pairs are not judged in "
            f"{JUDGED}; judge them (--print-sample) for the estimate.[/]"
        )
    # Per stratum: judged pairs drawn for it, and how many were truly different.
    kn: dict[str, tuple[list[int], list[int]]] = {}
    lines = []
    for mode in JUDGED_MODES:
        ks, ns = [], []
        for b in range(len(BANDS)):
            tag = f"{mode}:{band_label(b)}"
            if args.all_judged:
                sv = serves[mode]
                pairs = {
                    (int(asked[qi]), int(sv.src[qi]))
                    for qi in range(nq)
                    if sv.src[qi] >= 0 and not sv.right[qi] and band_of(float(sv.sim[qi])) == b
                }
                rows = [judged[pair] for pair in sorted(pairs & set(judged))]
            else:
                rows = [
                    judged[(r["query"], r["candidate"])]  # type: ignore[index]
                    for r in sample
                    if tag in r["strata"] and (r["query"], r["candidate"]) in judged  # type: ignore[operator]
                ]
            k = sum(1 for r in rows if r["label"] == "different")
            ks.append(k)
            ns.append(len(rows))
            pop = int(
                sum(
                    1
                    for qi in range(nq)
                    if serves[mode].src[qi] >= 0
                    and not serves[mode].right[qi]
                    and band_of(float(serves[mode].sim[qi])) == b
                )
            )
            lo, hi = wilson(k, len(rows))
            lines.append(
                f"  {mode:>8} {band_label(b):>9}: QQP-wrong serves {pop:>5,}; judged "
                f"{len(rows):>3}: same {len(rows) - k:>3}, different {k:>3} -> truly wrong "
                f"{(k / len(rows) if rows else float('nan')):.0%} "
                f"(Wilson 95 % {lo:.0%}-{hi:.0%})"
            )
        kn[mode] = (ks, ns)
    n_judged = len({(r["query"], r["candidate"]) for r in sample} & set(judged))
    n_same = sum(
        1
        for r in sample
        if (r["query"], r["candidate"]) in judged
        and judged[(r["query"], r["candidate"])]["label"] == "same"  # type: ignore[index]
    )
    console.print(
        f"Judged sample: {n_judged} distinct pairs that QQP labels wrong; judged 'same' "
        f"(a paraphrase QQP missed): {n_same} ({n_same / max(n_judged, 1):.0%}); judged "
        f"'different' (agrees with QQP): {n_judged - n_same}."
    )
    for line in lines:
        console.print(line)
    # The verifier against the judgments, on the verifier-off sample.
    off_rows = [r for r in sample if any(s.startswith("off:") for s in r["strata"])]  # type: ignore[union-attr]
    agree = {"same": [0, 0], "different": [0, 0]}
    for r in off_rows:
        key = (int(r["query"]), int(r["candidate"]))  # type: ignore[call-overload]
        if key not in judged:
            continue
        ok = verify_mod.verify(data.texts[key[0]], data.texts[key[1]], "balanced").ok
        agree[str(judged[key]["label"])][0 if ok else 1] += 1
    console.print(
        "Balanced verifier on the verifier-off sample: judged 'different' "
        f"{sum(agree['different'])} -> refused {agree['different'][1]}; judged 'same' "
        f"{sum(agree['same'])} -> refused {agree['same'][1]}."
    )

    est: dict[str, Estimate] = {}
    for mode in MODES:
        source = mode if mode in kn else "balanced"  # lenient/strict: balanced's fractions
        est[mode] = estimate(serves[mode], *kn[source], args.draws, args.sample_seed)

    from rich.table import Table

    table = Table(
        title=f"{nq:,} questions asked; rates in % of queries; est. true wrong: point "
        "[95 % interval]",
        title_justify="left",
    )
    for col in ("threshold", "hit off", "hit bal", "QQP wrong off", "QQP wrong bal",
                "est. true wrong off", "est. true wrong bal", "hit len / strict",
                "est. wrong len / strict"):  # fmt: skip
        table.add_column(col, justify="right")
    raw_rows = []
    for ti, t in enumerate(THRESHOLDS):
        hit = {m: serves[m].served(t).sum() / nq for m in MODES}
        qw = {m: serves[m].wrong(t).sum() / nq for m in MODES}
        e = {m: (est[m].point[ti], est[m].lo[ti], est[m].hi[ti]) for m in MODES}
        table.add_row(
            f"{t:.2f}",
            f"{hit['off']:.1%}",
            f"{hit['balanced']:.1%}",
            f"{qw['off']:.2%}",
            f"{qw['balanced']:.2%}",
            f"{e['off'][0]:.2%} [{e['off'][1]:.2%}-{e['off'][2]:.2%}]",
            f"{e['balanced'][0]:.2%} [{e['balanced'][1]:.2%}-{e['balanced'][2]:.2%}]",
            f"{hit['lenient']:.1%} / {hit['strict']:.1%}",
            f"{e['lenient'][0]:.2%} / {e['strict'][0]:.2%}",
        )
        raw_rows.append({"threshold": t, "hit": hit, "qqp_wrong": qw, "est": e})
    console.print(table)
    console.print(
        "[dim]lenient and strict use the balanced sample's judged fractions per band (their "
        "serves were not sampled separately).[/]"
    )

    def lowest(mode: str, which: str) -> float | None:
        e = est[mode]
        arr = e.hi if which == "upper" else e.point
        ok = [
            i
            for i in range(len(THRESHOLDS))
            if all(arr[j] <= TARGET for j in range(i, len(THRESHOLDS)))
        ]
        return THRESHOLDS[ok[0]] if ok else None

    for which in ("upper", "point"):
        t_bal, t_off = lowest("balanced", which), lowest("off", which)
        parts = []
        for name, mode, t in (
            ("verifier balanced", "balanced", t_bal),
            ("static (off)", "off", t_off),
        ):
            if t is None:
                parts.append(f"{name}: none on the grid")
                continue
            hr = serves[mode].served(t).sum() / nq
            parts.append(f"{name}: {t:.2f} (hit rate {hr:.1%})")
        console.print(
            f"Lowest threshold with the estimated true wrong-serve rate ({which} end) <= 1 % "
            f"at it and above: " + "; ".join(parts)
        )

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    png = common.RESULTS_DIR / PLOT_NAME
    title = f"QQP, {len(stored):,} stored, {nq:,} asked; MiniLM; judged sample {n_judged} pairs"
    plot(serves, {m: est[m] for m in ("off", "balanced")}, nq, png, title)
    if png.stat().st_size < 300_000:
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        DOCS_IMG.write_bytes(png.read_bytes())
    (common.RESULTS_DIR / f"{args.label}.json").write_text(
        json.dumps(
            {"argv": common.argv_line(), "machine": info, "rows": raw_rows},
            indent=1,
            default=float,
        )
    )
    txt = common.save_console(console, f"{args.label}.txt")
    print(f"saved {txt}, {png} and {DOCS_IMG}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
