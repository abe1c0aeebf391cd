"""Batch kNN: the embedded store (Qdrant Edge, HNSW) vs qdrant-client local mode vs exact numpy.

    python benchmarks/bench_knn.py [--points 33000] [--dim 512] [--queries 2000]
                                   [--local-queries 300] [-k 10]

Synthetic clustered vectors (the shape of real embeddings: 200 clusters of varied spread,
L2-normalised), queries drawn from the pool plus noise, all three searched in one run
with the same queries. Recall@k is measured against exact numpy search. qdrant-client's
local mode is brute force in Python and far slower, so it answers only the first
``--local-queries`` queries (a tenth of them with the filter) and its throughput is per
query. Prints a table with
queries/s, recall@k and the speed ratio to local mode (target: edge at least 50x, recall
at least 0.99).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

os.environ.setdefault("IRIS_PROGRESS", "0")

from iris.store import EdgeStore, Filter, Hit, ServerStore


def clustered(n: int, dim: int, *, seed: int = 0) -> npt.NDArray[np.float32]:
    """``n`` unit vectors in 200 clusters whose spreads vary from tight to diffuse."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, dim))
    spread = rng.uniform(0.3, 1.2, size=200)
    member = rng.integers(0, 200, n)
    vectors = centres[member] + spread[member, None] * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def exact_knn(
    pool: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    k: int,
    keep: npt.NDArray[np.bool_] | None,
) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` most similar pool vectors of each query (cosine on unit vectors)."""
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), 512):
        scores = queries[start : start + 512] @ pool.T
        if keep is not None:
            scores[:, ~keep] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + 512] = np.take_along_axis(top, order, axis=1)
    return out


def recall(hits: list[list[Hit]], truth: npt.NDArray[np.int64]) -> float:
    found = [len({h.id for h in row} & set(t.tolist())) for row, t in zip(hits, truth, strict=True)]
    return float(np.mean(found)) / truth.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=33_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--local-queries", type=int, default=300)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()

    pool = clustered(args.points, args.dim)
    rng = np.random.default_rng(1)
    picked = rng.choice(args.points, args.queries, replace=False)
    noisy = pool[picked] + 0.05 * rng.normal(size=(args.queries, args.dim))
    queries = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(args.points, dtype=np.int64)
    labeled = ids % 6 == 0  # one image in six "labeled": the filter kNN pseudo-labels use
    payloads = [{"split": "pool", "has_label": bool(flag), "status": "unlabeled"} for flag in labeled]
    flt = Filter(must={"has_label": True})
    k = args.k
    print(f"{args.points} x {args.dim}-d vectors, {args.queries} queries, k={k}, {os.cpu_count()} CPUs")

    rows: list[tuple[str, str, int, float, float]] = []
    t = time.perf_counter()
    truth = exact_knn(pool, queries, k, None)
    truth_flt = exact_knn(pool, queries, k, labeled)
    exact_s = (time.perf_counter() - t) / 2
    rows.append(("exact numpy", "all", args.queries, args.queries / exact_s, 1.0))

    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Path(tmp), collection="bench")
        t = time.perf_counter()
        store.upsert(ids, pool, payloads)
        upsert_s = time.perf_counter() - t
        t = time.perf_counter()
        store.optimize()
        index_s = time.perf_counter() - t
        print(f"edge: upsert {upsert_s:.1f} s, HNSW build {index_s:.1f} s")
        for name, f, true in (("all", None, truth), ("has_label", flt, truth_flt)):
            store.query_batch(queries[:50], k=k, flt=f)  # warm caches
            t = time.perf_counter()
            hits = store.query_batch(queries, k=k, flt=f)
            spent = time.perf_counter() - t
            rows.append(("edge (HNSW)", name, args.queries, args.queries / spent, recall(hits, true)))
        store.close()

    local = ServerStore.local(":memory:", collection="bench")
    t = time.perf_counter()
    local.upsert(ids, pool, payloads)
    print(f"local mode: upsert {time.perf_counter() - t:.1f} s")
    for name, f, true in (("all", None, truth), ("has_label", flt, truth_flt)):
        # Local mode checks filters point by point in Python: ten times fewer queries there.
        n_local = min(args.local_queries if f is None else max(10, args.local_queries // 10), args.queries)
        t = time.perf_counter()
        hits = local.query_batch(queries[:n_local], k=k, flt=f)
        spent = time.perf_counter() - t
        rows.append(("qdrant-client local", name, n_local, n_local / spent, recall(hits, true[:n_local])))
    local.close()

    local_qps = {r[1]: r[3] for r in rows if r[0] == "qdrant-client local"}
    print()
    print(
        f"{'store':<22}{'filter':<11}{'queries':>8}{'queries/s':>12}{'recall@' + str(k):>11}{'vs local':>10}"
    )
    for store_name, filter_name, n, qps, rec in rows:
        ratio = qps / local_qps.get(filter_name, local_qps["all"])
        print(f"{store_name:<22}{filter_name:<11}{n:>8}{qps:>12.1f}{rec:>11.4f}{ratio:>9.0f}x")


if __name__ == "__main__":
    main()
