"""Time the whole pseudolabel + select stage on synthetic clustered vectors in Qdrant Edge.

    python benchmarks/bench_pseudolabel.py                   # 12K and 100K, 256-d, 200 labels
    python benchmarks/bench_pseudolabel.py --sizes 12000 --dim 1280

For each size: a fresh work directory and Edge store are filled (not timed, then closed
so HNSW is built as after ``iris embed``), and the stage runs as ``iris pseudolabel``
does: kNN ensemble, seeded KMeans, the leave-one-out/k-fold estimate, the shortlist.
The t-SNE map is timed apart (it draws a fixed 2,000 points whatever the pool size).
Prints one row per size: seconds, the share spent inside Qdrant, and the counts.
Targets on 2 cores: 12K under 20 s, 100K under 3 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")

from iris.cli._common import echo_table
from iris.pseudolabel.stage import pseudolabel
from iris.pseudolabel.synthetic import clustered_pool
from iris.select import select
from iris.store import open_store
from iris.workdir import init_workdir


def bench(n: int, *, dim: int, labeled: int, test: int, with_map: bool, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = init_workdir(Path(tmp) / "work")
        settings = workdir.settings()
        settings = replace(settings, select=replace(settings.select, map_points=0))
        pool = clustered_pool(
            n, dim=dim, n_labeled=labeled, n_test=test, blobs_per_class=16, spread=1.2, seed=seed
        )
        tic = time.perf_counter()
        store = open_store(workdir, settings)
        pool.load_into(store)
        store.close()  # builds HNSW, as the embed stage leaves it
        load_s = time.perf_counter() - tic

        store = open_store(workdir, settings)
        tic = time.perf_counter()
        report = pseudolabel(workdir, settings, store)
        sel = select(workdir, settings, store)
        stage_s = time.perf_counter() - tic
        map_s = None
        if with_map:
            mapped = replace(settings, select=replace(settings.select, map_points=2000))
            tic = time.perf_counter()
            select(workdir, mapped, store)
            map_s = time.perf_counter() - tic - sel.seconds  # the select part is already known
        store.close()
    qdrant = report.qdrant_seconds + sel.qdrant_seconds
    return {
        "vectors": n,
        "dim": dim,
        "labeled": labeled,
        "load s": round(load_s, 1),
        "pseudolabel s": round(report.seconds, 1),
        "select s": round(sel.seconds, 1),
        "stage s": round(stage_s, 1),
        "qdrant s": round(qdrant, 1),
        "qdrant share": f"{qdrant / stage_s:.0%}",
        "knn s": round(report.timings["knn"], 1),
        "kmeans s": round(report.timings["kmeans"], 1),
        "estimate s": round(report.timings["estimate"], 1),
        "neighbours s": round(sel.timings["neighbours"], 1),
        "payload s": round(report.timings["payload"] + sel.timings["payload"], 1),
        "auto": f"{report.auto_fraction:.1%}",
        "problematic": f"{report.problematic_fraction:.1%}",
        "shortlist": f"{sel.shortlist_fraction:.1%}",
        "map s": "-" if map_s is None else round(map_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="12000,100000", help="comma-separated numbers of vectors")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--labeled", type=int, default=200)
    parser.add_argument("--test-share", type=float, default=0.1, help="share of vectors in the test split")
    parser.add_argument("--no-map", action="store_true", help="skip timing the t-SNE map")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(
            bench(
                n,
                dim=args.dim,
                labeled=args.labeled,
                test=int(n * args.test_share),
                with_map=not args.no_map,
                seed=args.seed,
            )
        )
        print(f"done {rows[-1]}", file=sys.stderr, flush=True)
    echo_table(rows, title=f"pseudolabel + select on {os.cpu_count()} CPU cores (Qdrant Edge)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
