"""A slow Redis: what a lookup that misses plus the store of the answer add to a call.

Every cache talks to one private Redis through a proxy that holds each reply ``delay``
milliseconds (`tests.reliability.proxy --delay`): a Redis that is alive but slow (a
saturated node, a far region, a noisy neighbour). Each call is what an app does on a
miss: the cache's lookup, then its update with the model's answer (no model time: only
what the cache adds is timed). Calls go round robin across the caches, so each meets the
same moments of load.

* semcache: the LangChain ``SemanticCache``, its defaults (``socket_timeout`` 100 ms; a
  lookup and its store share that budget, `semcache_core.deadline`).
* semcache, per-trip: the same with the call budget switched off, i.e. each round trip
  has its own 100 ms (what semcache did before the deadline; for reference).
* the peers at their defaults, through LangChain or RedisVL: RedisVL ``SemanticCache``,
  langchain-redis ``RedisSemanticCache`` (lc-redis semantic) and ``RedisCache`` (lc-redis
  exact); none sets a socket timeout.

"stored" is how many of the answers a later lookup (with the delay gone) finds: the
price of a deadline is the stores it cuts short.

Usage:
    python benchmarks/deadline.py                 # delays 0, 20, 50, 80, 150 ms
    python benchmarks/deadline.py --calls 5 --delays 0,80
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.progress import Progress
from rich.table import Table

from benchmarks import common
from benchmarks.qqp import chat_prompt
from benchmarks.speed import (
    Subject,
    langchain_subject,
    lc_redis_exact_subject,
    lc_redis_semantic_subject,
    redisvl_subject,
)
from tests.reliability.proxy import DelayProxyProcess

TIMEOUT_MS = 100.0


@dataclass
class Tally:
    added: dict[float, list[float]] = field(default_factory=dict)  # delay -> seconds per call
    stored: dict[float, int] = field(default_factory=dict)


@contextlib.contextmanager
def per_trip_timeouts() -> Iterator[None]:
    """The call budget off (every trip its own ``socket_timeout``), for the reference row."""
    from semcache_core.storage import deadline as connections

    real = connections.current
    connections.current = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        connections.current = real


def semcache(url: str, name: str) -> Subject:
    from langchain_semcache import SemanticCache

    cache = SemanticCache(
        redis_url=url,
        embeddings=common.TableEmbeddings(lambda text: None),  # hashed vectors: no model
        namespace=f"dl{uuid.uuid4().hex[:8]}",
    )
    subject = langchain_subject(name, cache, True, cache.engine.layout.index_name)
    subject.close = cache.engine.close
    return subject


def make_subjects(url: str) -> list[tuple[Subject, bool]]:
    """(subject, whether it runs with per-trip timeouts)."""
    vectorizer = common.TableVectorizer(lambda text: common.hash_vector(text).tolist())
    made = [
        (semcache(url, "semcache"), False),
        (semcache(url, "semcache, per-trip"), True),
        (redisvl_subject(url, vectorizer), False),
        (lc_redis_semantic_subject(url, common.TableEmbeddings(lambda text: None)), False),
        (lc_redis_exact_subject(url), False),
    ]
    short = {"RedisVL SemanticCache": "RedisVL", "langchain-redis RedisSemanticCache":
             "lc-redis semantic", "langchain-redis RedisCache": "lc-redis exact"}  # fmt: skip
    for subject, _ in made:
        subject.name = short.get(subject.name, subject.name)
    return made


def one_call(subject: Subject, question: str, reference: bool) -> float:
    prompt = chat_prompt(question)
    guard = per_trip_timeouts() if reference else contextlib.nullcontext()
    with guard:
        started = time.perf_counter()
        subject.lookup(question, prompt)
        subject.store(question, prompt, 1)
        return time.perf_counter() - started


def found_later(subject: Subject, question: str) -> bool:
    prompt = chat_prompt(question)
    return subject.lookup(question, prompt) is not None


def run(url: str, delays: Sequence[float], calls: int, console: Any) -> dict[str, Tally]:
    proxy = DelayProxyProcess(int(url.rsplit(":", 1)[1].split("/")[0]))
    subjects = make_subjects(proxy.url)
    tallies = {s.name: Tally() for s, _ in subjects}
    try:
        for subject, reference in subjects:  # set-up (index creation) at full speed
            one_call(subject, f"warm up {subject.name}", reference)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("miss + store", total=len(delays) * calls * len(subjects))
            for delay in delays:
                proxy.set_delay(delay)
                asked: dict[str, list[str]] = {s.name: [] for s, _ in subjects}
                for i in range(calls):
                    for subject, reference in subjects:  # round robin
                        question = f"{subject.name} {delay} ms question {i} {uuid.uuid4().hex}"
                        seconds = one_call(subject, question, reference)
                        tallies[subject.name].added.setdefault(delay, []).append(seconds)
                        asked[subject.name].append(question)
                        bar.advance(task)
                proxy.set_delay(0)
                time.sleep(1.1)  # the trip clock forgets the slow trips (RECENT_SECONDS)
                for subject, _ in subjects:
                    found = sum(found_later(subject, q) for q in asked[subject.name])
                    tallies[subject.name].stored[delay] = found
    finally:
        for subject, _ in subjects:
            with contextlib.suppress(Exception):
                subject.close()
        proxy.close()
    return tallies


def table(tallies: dict[str, Tally], delays: Sequence[float], calls: int) -> Table:
    t = Table(
        title=f"a miss plus its store: ms added to the call, every Redis reply held back "
        f"(socket_timeout {TIMEOUT_MS:.0f} ms; {calls} calls per cell; stored = answers a "
        "later lookup finds)"
    )
    t.add_column("cache")
    for delay in delays:
        t.add_column(f"{delay:g} ms: p50", justify="right")
        t.add_column("worst", justify="right")
        t.add_column("stored", justify="right")
    for name, tally in tallies.items():
        cells: list[str] = [name]
        for delay in delays:
            added = tally.added[delay]
            cells += [
                f"{statistics.median(added) * 1000:.1f}",
                f"{max(added) * 1000:.1f}",
                f"{tally.stored[delay]}/{len(added)}",
            ]
        t.add_row(*cells)
    return t


def plot(tallies: dict[str, Tally], delays: Sequence[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, tally in tallies.items():
        worst = [max(tally.added[d]) * 1000 for d in delays]
        med = [statistics.median(tally.added[d]) * 1000 for d in delays]
        (line,) = ax.plot(delays, med, marker="o", label=f"{name} (p50)")
        ax.plot(delays, worst, linestyle=":", color=line.get_color(), label=f"{name} (worst)")
    ax.axhline(TIMEOUT_MS + 20, color="grey", linestyle="--", label="socket_timeout + 20 ms")
    ax.set_xlabel("every Redis reply held back (ms)")
    ax.set_ylabel("ms a miss + store add to the call")
    ax.set_title("A slow Redis: the latency each cache adds")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=12, help="calls per cache and delay")
    parser.add_argument("--delays", default="0,20,50,80,150", help="ms, comma-separated")
    args = parser.parse_args(argv)
    delays = [float(d) for d in args.delays.split(",")]
    os.environ.setdefault("BENCH_COLUMNS", "200")  # 16 columns
    console = common.new_console()
    console.print(common.argv_line())
    common.print_machine(console, common.machine())
    with common.private_redis(console) as url:
        tallies = run(url, delays, args.calls, console)
    console.print(table(tallies, delays, args.calls))
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    png = common.RESULTS_DIR / "deadline.png"
    plot(tallies, delays, png)
    console.print(f"plot: {png}")
    common.save_console(console, "deadline.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
