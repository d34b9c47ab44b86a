"""Where the default answer-embedding judge puts its agreement bar, and how noisy it is.

A shadow verdict compares the cached answer with the fresh one. A real LLM rewords a
right answer from call to call, so "agreed" cannot mean "equal text"; it has to mean
"as similar as two answers to the same question usually are, and more similar than two
answers to different questions ever are". This script measures both with
all-MiniLM-L6-v2 on the rewording workload of `tests/rewording.py` (40 intents, four
phrasings of every right answer, hard-negative intents such as cancel vs pause):

* same-intent pairs: every pair of two different phrasings of one intent (240);
* cross-intent pairs: every pair of phrasings of two different intents (12,480);
* hard negatives: the cross-intent pairs of intents whose questions come within 0.7 of
  each other (the candidates a semantic cache actually finds).

For each bar: the share of same-intent pairs called agreed, the judge's false-
disagreement rate (1 - that) with its 95 % lower confidence bound, and the false-
agreement rate on cross-intent and hard-negative pairs with its 95 % upper bound. The
engine flow is also simulated (a random phrasing is cached, a random phrasing is fresh,
so a quarter of same-intent verdicts are identical texts), for the text judge, the old
``EmbeddingJudge(minilm, 0.9)`` and the chosen bar.

    python benchmarks/judge_bar.py        # writes benchmarks/results/judge_bar.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))

from semcache_core.calibration import clopper_pearson_lower, clopper_pearson_upper
from semcache_core.embedding import minilm
from semcache_demo.workload import INTENTS
from tests.rewording import PHRASINGS

BARS = (0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.90)
CHOSEN = 0.80


def main() -> None:
    model = minilm()
    texts = [t for v in PHRASINGS.values() for t in v]
    vec = np.asarray(model.embed_many(texts), dtype=np.float64)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    row = {t: i for i, t in enumerate(texts)}
    questions = {i.id: i.questions for i in INTENTS}
    qtexts = [q for i in INTENTS for q in i.questions]
    qvec = np.asarray(model.embed_many(qtexts), dtype=np.float64)
    qvec /= np.linalg.norm(qvec, axis=1, keepdims=True)
    qrow = {q: i for i, q in enumerate(qtexts)}

    def cos(a: str, b: str) -> float:
        return float(vec[row[a]] @ vec[row[b]])

    def qsim(x: str, y: str) -> float:
        return max(
            float(qvec[qrow[a]] @ qvec[qrow[b]]) for a in questions[x] for b in questions[y]
        )

    ids = list(PHRASINGS)
    same = np.array(
        [cos(a, b) for t in PHRASINGS.values() for i, a in enumerate(t) for b in t[i + 1 :]]
    )
    cross, hard = [], []
    for i, x in enumerate(ids):
        for y in ids[i + 1 :]:
            near = qsim(x, y) >= 0.7
            for a in PHRASINGS[x]:
                for b in PHRASINGS[y]:
                    cross.append(cos(a, b))
                    if near:
                        hard.append(cos(a, b))
    crossa, harda = np.array(cross), np.array(hard)
    lines = [
        "Answer-embedding judge, all-MiniLM-L6-v2, rewording workload (tests/rewording.py)",
        f"same-intent pairs {len(same)}: min {same.min():.3f}, 5th pct "
        f"{np.percentile(same, 5):.3f}, median {np.median(same):.3f}",
        f"cross-intent pairs {len(crossa)}: median {np.median(crossa):.3f}, 99.9th pct "
        f"{np.percentile(crossa, 99.9):.3f}, max {crossa.max():.3f}",
        f"hard-negative pairs {len(harda)} (questions within 0.7): median "
        f"{np.median(harda):.3f}, max {harda.max():.3f}",
        "",
        "bar   same agreed  false-dis (95% lower)  cross agreed (95% upper)  hard agreed",
    ]
    for bar in BARS:
        k = int((same < bar).sum())
        c = int((crossa >= bar).sum())
        h = int((harda >= bar).sum())
        lines.append(
            f"{bar:.2f}  {1 - k / len(same):6.1%}      {k / len(same):5.1%} "
            f"({clopper_pearson_lower(k, len(same)):.2%})       {c / len(crossa):.3%} "
            f"({clopper_pearson_upper(c, len(crossa)):.3%})       {h}/{len(harda)}"
        )
    # The engine flow: cached and fresh answers are independent random phrasings.
    rng = np.random.default_rng(0)
    lines += ["", "verdicts in the engine flow (random cached phrasing, random fresh one):"]
    for name, bar in (
        ("text judge", None),
        ("EmbeddingJudge 0.90", 0.90),
        ("default 0.80", CHOSEN),
    ):
        agreed_same = agreed_cross = 0
        n = 20_000
        for _ in range(n):
            x, y = rng.choice(len(ids), 2, replace=False)
            px, py = PHRASINGS[ids[x]], PHRASINGS[ids[y]]
            a, b = px[rng.integers(len(px))], px[rng.integers(len(px))]
            agreed_same += a == b or (bar is not None and cos(a, b) >= bar)
            c = py[rng.integers(len(py))]
            agreed_cross += bar is not None and cos(a, c) >= bar
        lines.append(
            f"  {name:<20} same-intent agreed {agreed_same / n:6.1%}, "
            f"cross-intent agreed {agreed_cross / n:.2%}"
        )
    out = "\n".join(lines)
    print(out)
    target = Path(__file__).parent / "results" / "judge_bar.txt"
    target.write_text(out + "\n")


if __name__ == "__main__":
    main()
