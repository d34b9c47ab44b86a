"""What the built-in verifier costs: instructions per text parsed and per comparison.

Every semantic candidate is verified (`semcache_core.core.verify`): the query's text is
parsed (`features`; a stored question's parts are memoized, 4,096 texts), then the two
are compared. Wall time of a 50 us call on a shared 2-core machine swings by 2x, so this
counts instructions under valgrind's callgrind, as ``instructions.py`` does: each
measure runs in a child process twice, with 0 and with ``--calls`` calls after the same
set-up, and reports the difference divided by the calls.

* parse: ``features`` of texts not seen before (the word memo warmed on others).
* compare: ``verify`` of pairs whose parts are memoized (the candidate's usual case).

Pairs: the near-miss corpus (``benchmarks/corpus``, app prompts, some long) and, when
``../shared/data/qqp_dev.jsonl`` is there, Quora question pairs.

``--ref PATH`` measures another copy of ``verify.py`` beside the current one (e.g. an
export of an older commit, ``git show <commit>:semcache_core/core/verify.py >
/tmp/verify_old.py``) and checks that both give the same verdict, rule included, on every
pair at every strictness (``--check`` only does that, without valgrind).

Usage:
    python benchmarks/verify_cost.py
    python benchmarks/verify_cost.py --ref /tmp/verify_old.py
    python benchmarks/verify_cost.py --ref /tmp/verify_old.py --check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import common
from rich.table import Table

HERE = Path(__file__).resolve().parent
QQP = HERE.parent.parent / "shared" / "data" / "qqp_dev.jsonl"
_COLLECTED = re.compile(r"Collected : (\d+)")
WARM = 1000  # pairs (or texts) whose parts are made before the counted calls


def _module(ref: str | None) -> ModuleType:
    if ref is None:
        from semcache_core.core import verify

        return verify
    spec = importlib.util.spec_from_file_location("verify_ref", ref)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["verify_ref"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def _pairs(source: str, limit: int | None = None) -> list[tuple[str, str]]:
    if source == "qqp":
        with QQP.open() as f:
            rows = [json.loads(line) for line in f]
        pairs = [(r["text_a"], r["text_b"]) for r in rows]
    else:
        pairs = []
        for name in ("pairs_a.jsonl", "pairs_b.jsonl"):
            with (HERE / "corpus" / name).open() as f:
                for row in map(json.loads, f):
                    pairs.append((row["a"], row["b"]))
                    if row.get("input_a") and row.get("input_b"):
                        pairs.append((row["input_a"], row["input_b"]))
    return pairs if limit is None else pairs[:limit]


def child(measure: str, source: str, n: int, ref: str | None) -> None:
    verify = _module(ref)
    if measure == "parse":
        texts = [t for pair in _pairs(source) for t in pair]
        for text in texts[:WARM]:
            verify.features(text)
        for text in texts[WARM : WARM + n]:
            verify.features(text)
    else:
        pairs = _pairs(source, WARM)
        for a, b in pairs:
            verify.verify(a, b)  # both texts' parts memoized from here on
        for i in range(n):
            a, b = pairs[i % len(pairs)]
            verify.verify(a, b)
    os._exit(0)  # no teardown in the count


def _count(measure: str, source: str, n: int, ref: str | None) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += [__file__, "--child", measure, source, str(n)] + (["--ref", ref] if ref else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{measure} {source} under callgrind failed:\n{proc.stderr[-3000:]}")
    return int(found.group(1))


def check(ref: str, say: Callable[[str], object] = print) -> int:
    """Verdicts of the current verifier against ``ref`` on every pair, both ways round,
    and on random pairings of their texts; returns the number that differ."""
    new, old = _module(None), _module(ref)
    pairs = _pairs("corpus") + (_pairs("qqp") if QQP.exists() else [])
    texts = [t for pair in pairs for t in pair]
    rng = random.Random(0)
    pairs += [(b, a) for a, b in pairs[:20_000]]
    pairs += [(rng.choice(texts), rng.choice(texts)) for _ in range(5_000)]
    differ = 0
    for strictness in ("lenient", "balanced", "strict"):
        for a, b in pairs:
            x, y = new.verify(a, b, strictness), old.verify(a, b, strictness)
            if (x.ok, x.reason) != (y.ok, y.reason):
                differ += 1
    say(f"{len(pairs):,} pairs x 3 strictness levels: {differ} verdicts differ from {ref}")
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--ref", help="another verify.py to measure and check against")
    parser.add_argument("--check", action="store_true", help="only check verdicts (--ref)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="verify_cost.txt")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.ref)
        return
    if args.check:
        if not args.ref:
            parser.error("--check needs --ref")
        raise SystemExit(1 if check(args.ref) else 0)
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    console = common.new_console()
    common.print_machine(console, common.machine())
    sources = ["corpus"] + (["qqp"] if QQP.exists() else [])
    versions = [("current", None)] + ([(Path(args.ref).name, args.ref)] if args.ref else [])
    table = Table(title=f"instructions per call ({args.calls} calls, callgrind)")
    table.add_column("measure")
    for name, _ in versions:
        table.add_column(name, justify="right")
    for measure in ("parse", "compare"):
        for source in sources:
            cells = []
            for _, ref in versions:
                base = _count(measure, source, 0, ref)
                counted = _count(measure, source, args.calls, ref)
                cells.append(f"{(counted - base) / args.calls:,.0f}")
            label = "parse a new text" if measure == "parse" else "compare (parts memoized)"
            table.add_row(f"{label}: {source}", *cells)
    console.print(table)
    if args.ref:
        check(args.ref, console.print)
    console.print(f"[dim]python benchmarks/verify_cost.py {' '.join(sys.argv[1:])}[/dim]")
    console.print(f"saved {common.save_console(console, args.out)}")


if __name__ == "__main__":
    main()
