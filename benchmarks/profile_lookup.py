"""Profile semcache's semantic hit and miss next to its peers, through speed.py's subjects.

    python benchmarks/profile_lookup.py --size 1000 --queries 200 [--profile]

Stores ``--size`` entries in semcache (default), RedisVL SemanticCache and
langchain-redis RedisSemanticCache on one private Redis, times interleaved rounds of
semantic hits, misses and exact hits (p50 per cache), and with ``--profile`` runs
cProfile over semcache's semantic and miss lookups (top functions by cumulative and own
time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import time

import common
import numpy as np
import qqp
import redis
import speed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--caches", default="semcache,redisvl,lc-redis-semantic")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument(
        "--fresh", action="store_true", help="profile queries never asked before (as speed.py)"
    )
    args = ap.parse_args()
    console = common.new_console()
    print("load average", os.getloadavg())
    data = qqp.load()
    store = qqp.VectorStore(data, "plain")
    store.ensure(range(len(data.texts)))
    pool = 1000 if args.fresh else max(200, args.queries)
    wl = speed.build_workload(data, store.matrix, args.size, pool, 0)
    loop = asyncio.new_event_loop()
    keys = args.caches.split(",")
    with common.private_redis(console) as url:
        subjects = {}
        for spec in speed.SPECS:
            if spec.key in keys:
                subjects[spec.key] = s = spec.make(url, wl, "precomputed")
                speed.populate(s, wl, 0, args.size, console, loop)
                print(spec.key, s.settle())
        rng = random.Random(1)
        sem_ids = rng.sample(wl.semantic, min(args.queries, len(wl.semantic)))
        miss_ids = rng.sample(wl.miss, min(args.queries, len(wl.miss)))
        sem = [(wl.queries[j], wl.query_prompts[j]) for j in sem_ids]
        miss = [(wl.queries[j], wl.query_prompts[j]) for j in miss_ids]
        exact = [(wl.questions[i], wl.prompts[i]) for i in rng.sample(range(args.size), 200)]
        kinds = {"semantic": sem, "miss": miss, "exact": exact}
        for s in subjects.values():
            for q, p in sem[:20] + miss[:20] + exact[:20]:
                s.lookup(q, p)
        admin = redis.Redis.from_url(url)
        lat: dict[tuple[str, str], list[float]] = {}
        hits: dict[tuple[str, str], int] = {}
        server: dict[tuple[str, str], list[dict[str, tuple[int, float]]]] = {}
        for _ in range(args.rounds):
            for key, s in subjects.items():
                for kind, items in kinds.items():
                    admin.config_resetstat()
                    for q, p in items:
                        t = time.perf_counter()
                        served = s.lookup(q, p)
                        lat.setdefault((key, kind), []).append(time.perf_counter() - t)
                        hits[(key, kind)] = hits.get((key, kind), 0) + (served is not None)
                    stats = admin.info("commandstats")
                    server.setdefault((key, kind), []).append(
                        {k[8:]: (v["calls"], v["usec_per_call"]) for k, v in stats.items()}
                    )
        print("load average", os.getloadavg())
        print("server side, last round: command: calls, usec per call")
        for (key, kind), rounds in sorted(server.items()):
            cmds = {k: v for k, v in rounds[-1].items() if k not in ("config|resetstat",)}
            print(f"  {kind:9s} {key:20s} {cmds}")
        for (key, kind), values in sorted(lat.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            ms = np.array(values) * 1000
            print(
                f"{kind:9s} {key:20s} p50 {np.percentile(ms, 50):.3f} ms  "
                f"p90 {np.percentile(ms, 90):.3f}  hit {hits[(key, kind)] / len(values):.0%}"
            )
        if args.fresh:  # queries the timed rounds did not ask
            sem_fresh = [i for i in wl.semantic if i not in set(sem_ids)][: 3 * args.queries]
            miss_fresh = [i for i in wl.miss if i not in set(miss_ids)][: 3 * args.queries]
            kinds["semantic"] = [(wl.queries[j], wl.query_prompts[j]) for j in sem_fresh]
            kinds["miss"] = [(wl.queries[j], wl.query_prompts[j]) for j in miss_fresh]
        if args.profile and "semcache" in subjects:
            s = subjects["semcache"]
            for kind in ("semantic", "miss", "exact"):
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(1 if args.fresh else 3):
                    for q, p in kinds[kind]:
                        s.lookup(q, p)
                prof.disable()
                for order in ("cumulative", "tottime"):
                    out = io.StringIO()
                    st = pstats.Stats(prof, stream=out).sort_stats(order)
                    st.print_stats(args.top)
                    print(f"==== {kind} by {order} ({st.total_calls} calls)")
                    print(out.getvalue())
        for s in subjects.values():
            s.close()


if __name__ == "__main__":
    main()
