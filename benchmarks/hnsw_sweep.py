"""Raw RediSearch: recall and latency of one KNN query against EF_RUNTIME and the
hybrid policy, on random unit vectors (issue 14; what `index_choice.EF_BY_SIZE` rests on).

No semcache in the path: N random unit vectors of 384 dims in one HASH index (one TAG
``partition`` holding every entry, as a single-tenant semcache namespace), 300
near-duplicate queries at cosine 0.93-0.97 to a stored twin, ``KNN 1`` with and without
the TAG filter. "found" counts queries whose result is the twin (the brute-force nearest
by construction: unrelated random vectors sit near cosine 0). Latency is the client's
round trip on the loopback.

``--vectors qqp`` stores the first N entries of speed.py's QQP workload instead (real
MiniLM vectors, clustered, with near-duplicates among the stored questions) and asks its
held-out duplicates; "found" then counts queries whose first result is the brute-force
nearest stored entry (numpy, float32), and "tie" those whose first result is as similar
as it to within 1e-5 (another stored vector equally near).

Usage:
    python benchmarks/hnsw_sweep.py --size 10000
    python benchmarks/hnsw_sweep.py --size 100000 --m 32 --ef-construction 200 --efs 32,64,128
    python benchmarks/hnsw_sweep.py --size 10000 --vectors qqp --k 3 --efs 32,64,128,256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from semcache_core.embedded import start_embedded_redis
from semcache_core.entry import parse_search_reply
from semcache_core.storage.commands import index_progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--efs", default="10,50,100,200,400")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--flat", action="store_true", help="also a FLAT index")
    parser.add_argument("--k", type=int, default=1, help="KNN k (semcache asks 3)")
    parser.add_argument("--vectors", choices=("random", "qqp"), default="random")
    args = parser.parse_args()
    n, dims, q = args.size, 384, args.queries
    x, queries = qqp_vectors(n, q) if args.vectors == "qqp" else random_vectors(n, q, dims)
    sims = queries @ x.T
    twins = np.argmax(sims, axis=1)
    best = sims[np.arange(len(queries)), twins]
    q = len(queries)
    server = start_embedded_redis(Path(tempfile.mkdtemp()), reuse=False, appendfsync="no")
    client = redis.Redis.from_url(server.url)
    client.config_set("save", "")
    kinds = [("HNSW", ["M", args.m, "EF_CONSTRUCTION", args.ef_construction])]
    if args.flat:
        kinds.append(("FLAT", []))
    print(
        f"{n:,} {args.vectors} unit vectors, {dims} dims; HNSW M={args.m} EF_CONSTRUCTION="
        f"{args.ef_construction}; {q} near-duplicate queries; KNN {args.k}",
        flush=True,
    )
    try:
        for alg, extra in kinds:
            client.execute_command(
                "FT.CREATE", f"i{alg}", "ON", "HASH", "PREFIX", 1, f"{alg}:", "SCHEMA",
                "partition", "TAG", "v", "VECTOR", alg, 6 + len(extra), "TYPE", "FLOAT32",
                "DIM", dims, "DISTANCE_METRIC", "COSINE", *extra,
            )  # fmt: skip
            t = time.time()
            pipe = client.pipeline(transaction=False)
            for i in range(n):
                pipe.hset(f"{alg}:{i}", mapping={"partition": "p0", "v": x[i].tobytes()})
                if i % 2000 == 1999:
                    pipe.execute()
            pipe.execute()
            while not index_progress(client.execute_command("FT.INFO", f"i{alg}"))[1]:
                time.sleep(0.5)
            used = int(client.info("memory")["used_memory"])
            print(
                f"{alg}: loaded and indexed in {time.time() - t:.1f} s; Redis used_memory "
                f"{used / n:,.0f} bytes per entry (the hashes and every index so far)",
                flush=True,
            )
            efs = [None] if alg == "FLAT" else [int(e) for e in args.efs.split(",")]
            for ef in efs:
                for policy in (None, "BATCHES") if alg == "HNSW" else (None,):
                    for expr in ("*", "@partition:{p0}"):
                        attrs = [f"$EF_RUNTIME: {ef}"] if ef else []
                        if policy and expr != "*":
                            attrs.append(f"$HYBRID_POLICY: {policy}")
                        tail = (" => {" + "; ".join(attrs) + "}") if attrs else ""
                        query = f"({expr})=>[KNN {args.k} @v $vec AS d]{tail}"
                        found, tie, lat = 0, 0, []
                        for j in range(q):
                            t0 = time.perf_counter()
                            reply = client.execute_command(
                                "FT.SEARCH", f"i{alg}", query, "PARAMS", 2, "vec",
                                queries[j].tobytes(), "RETURN", 1, "d", "SORTBY", "d",
                                "LIMIT", 0, args.k, "DIALECT", 2,
                            )  # fmt: skip
                            lat.append(time.perf_counter() - t0)
                            keys = [k for k, _ in parse_search_reply(reply)]
                            hit = bool(keys) and keys[0] == f"{alg}:{twins[j]}"
                            found += hit
                            if keys and not hit:
                                got = int(keys[0].split(":")[1])
                                tie += bool(best[j] - sims[j, got] <= 1e-5)
                        ms = np.array(lat) * 1000
                        print(
                            f"{alg} ef {ef} policy {policy} filter {expr}: found {found}/{q}"
                            f"{f' (+{tie} tie)' if tie else ''}, "
                            f"p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f}",
                            flush=True,
                        )
    finally:
        server.stop()


def random_vectors(n: int, q: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """N random unit vectors and Q queries at cosine 0.93-0.97 to a stored twin each."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, dims)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    twins = rng.choice(n, q, replace=False)
    noise = rng.standard_normal((q, dims)).astype(np.float32)
    noise -= (noise * x[twins]).sum(1, keepdims=True) * x[twins]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    c = rng.uniform(0.93, 0.97, (q, 1)).astype(np.float32)
    return x, (c * x[twins] + np.sqrt(1 - c**2) * noise).astype(np.float32)


def qqp_vectors(n: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """speed.py's QQP workload: its first N stored vectors and Q semantic queries."""
    import qqp
    import speed

    data = qqp.load()
    store = qqp.VectorStore(data, "plain")
    store.ensure(range(len(data.texts)))
    wl = speed.build_workload(data, store.matrix, n, max(q, 1000), 7)
    n_stored = len(wl.questions)
    rows = [n_stored + j for j in wl.semantic[:q]]
    return wl.vectors[:n].copy(), wl.vectors[rows].copy()


if __name__ == "__main__":
    main()
