"""CPU instructions per LangChain cache call, semcache beside langchain-redis.

Wall time of a sub-millisecond call on a shared 2-core machine swings by 2x from run to
run; the instructions a call executes do not. Each row runs its calls in a child process
under valgrind's callgrind twice, with 0 and with ``--calls`` calls (the same set-up,
the same prompts built), and reports the difference divided by the calls: the client's
instructions per call (Python, redis-py, hashing, the socket calls' user-space side;
Redis runs in another process and is not counted). Both caches talk to one private
embedded Redis, through LangChain's ``BaseCache.lookup``, with the prompt LangChain
hands a cache for a chat model (``benchmarks/hotpath.py``'s prompts and answers).

Rows:

* miss, exact only: a prompt never asked before (a new request is built each call).
  semcache exact-only against ``RedisCache``.
* exact hit: 100 stored prompts asked in turn, each asked once before (semcache's
  request memo holds them, as it does for an application's repeats).
* exact hit, L1: the same with semcache's in-process tier (``l1_maxsize``).

Needs ``valgrind`` (``apt-get install valgrind``). About 2 minutes per run of a row
(two runs a row, two rows at a time).

Usage:
    python benchmarks/instructions.py                # 1,000 calls per row
    python benchmarks/instructions.py --calls 300
    python benchmarks/instructions.py --rows miss:semcache,miss:RedisCache
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
from rich.table import Table

_COLLECTED = re.compile(r"Collected : (\d+)")
ROWS = {
    "miss:semcache": "miss, exact only: semcache",
    "miss:RedisCache": "miss, exact only: langchain-redis RedisCache",
    "hit:semcache": "exact hit: semcache",
    "hit:semcache+L1": "exact hit: semcache + L1",
    "hit:RedisCache": "exact hit: langchain-redis RedisCache",
}
HOT = 100  # stored prompts the hit rows cycle through
WARM = 20  # calls before the counted ones (imports, connections, first-call paths)


def _cache(name: str, url: str, ns: str) -> object:
    """One cache; a child makes only its own (semcache's background threads, the L1
    subscriber and the stats flush, would run during another row's calls)."""
    from langchain_redis import RedisCache

    from langchain_semcache import SemanticCache

    if name == "RedisCache":
        return RedisCache(redis_url=url, prefix=ns)
    if name == "semcache+L1":
        return SemanticCache(redis_url=url, namespace=ns, l1_maxsize=10_000, l1_ttl=3600)
    assert name == "semcache", name
    return SemanticCache(redis_url=url, namespace=ns)


def child(mode: str, n: int, calls: int, url: str, ns: str) -> None:
    """One counted run: set up, then ``n`` calls of ``mode`` (``n`` is 0 or ``calls``)."""
    import hotpath

    kind, name = mode.split(":")
    cache = _cache(name, url, ns)
    lookup = cache.lookup  # type: ignore[attr-defined]
    llm = hotpath.LLM_STRING
    if kind == "miss":
        # Every run builds the same prompts, so only the calls differ between the runs.
        fresh = [hotpath.prompt(hotpath.question(10**7 + i)) for i in range(calls + WARM)]
        for p in fresh[:WARM]:
            lookup(p, llm)
        for p in fresh[WARM : WARM + n]:
            lookup(p, llm)
    else:
        hot = [hotpath.prompt(hotpath.question(i)) for i in range(HOT)]
        for p in hot:
            assert lookup(p, llm) is not None, "the parent stores the hot prompts"
        for i in range(n):
            lookup(hot[i % HOT], llm)
    os._exit(0)  # no teardown in the count


def _count(mode: str, n: int, calls: int, url: str, ns: str, out: Path) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}/{mode.replace(':', '_')}.{n}.out",
        sys.executable,
        __file__,
        "--child",
        mode,
        str(n),
        "--calls",
        str(calls),
        "--url",
        url,
        "--ns",
        ns,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{mode} under callgrind failed:\n{proc.stderr[-3000:]}")
    return int(found.group(1))


def per_call(mode: str, calls: int, url: str, ns: str, out: Path) -> float:
    base = _count(mode, 0, calls, url, ns, out)
    counted = _count(mode, calls, calls, url, ns, out)
    return (counted - base) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ns", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS)
    )
    parser.add_argument("--out", default="instructions.txt")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.calls, args.url, args.ns)
        return
    modes = [m for m in args.rows.split(",") if m]
    unknown = sorted(set(modes) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")

    import hotpath

    console = common.new_console()
    info = common.machine()
    common.print_machine(console, info)
    with common.private_redis(console) as url:
        ns = f"ins{uuid.uuid4().hex[:6]}"
        writers = [_cache("semcache", url, ns), _cache("RedisCache", url, ns)]
        for i in range(HOT):
            p, ans = hotpath.prompt(hotpath.question(i)), hotpath.answer(i)
            for cache in writers:
                cache.update(p, hotpath.LLM_STRING, ans)  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
            console.print(f"[dim]{len(modes)} rows x 2 callgrind runs, 2 at a time...[/]")
            futures = {m: pool.submit(per_call, m, args.calls, url, ns, Path(tmp)) for m in modes}
            counts = {m: f.result() for m, f in futures.items()}
    table = Table(title=f"instructions per call ({args.calls} calls, callgrind)")
    table.add_column("row")
    table.add_column("instructions", justify="right")
    table.add_column("ratio to RedisCache", justify="right")
    for mode in modes:
        peer = counts.get(f"{mode.split(':')[0]}:RedisCache")
        ratio = "-" if peer is None else f"{counts[mode] / peer:.2f}x"
        table.add_row(ROWS[mode], f"{counts[mode]:,.0f}", ratio)
    console.print(table)
    console.print(f"[dim]{common.argv_line()}[/]")
    common.save_console(console, args.out)


if __name__ == "__main__":
    main()
