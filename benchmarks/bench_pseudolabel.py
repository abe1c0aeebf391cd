"""Time the whole pseudolabel + select stage on synthetic clustered vectors in Qdrant Edge.

    python benchmarks/bench_pseudolabel.py                          # 12K and 100K, 256-d, 200 labels
    nice python benchmarks/bench_pseudolabel.py --sizes 1000000 --no-map
    python benchmarks/bench_pseudolabel.py --sizes 12000 --dim 1280
    python benchmarks/bench_pseudolabel.py --sizes 1000000 --keep /tmp/pl   # reuse a loaded store

Each size runs in two fresh processes, as a user's commands would: the first fills a
work directory's Edge store (not timed beyond the "load s" column; closing it builds
HNSW, as after ``iris embed``), the second runs the stage as ``iris pseudolabel`` then
``iris select`` do: kNN ensemble, seeded KMeans (mini-batch past 50K rows), the
leave-one-out/k-fold estimate, the neighbour queries and the shortlist (neither stage
writes the payload, so nothing is re-indexed; "reindex s" would show it if it were). "peak RSS" is that
second process's peak resident memory (getrusage), the store's engine included; "stage
cpu s" its CPU seconds (user + system), which on a shared machine says more than the
wall clock about what two idle cores would take.
The t-SNE map is timed apart (it draws a fixed 2,000 points whatever the pool size).
Targets on 2 cores: 12K under 20 s, 100K under 3 minutes, 1M under 15 minutes and 8 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")


def load(work: Path, n: int, *, dim: int, labeled: int, test: int, seed: int) -> dict[str, object]:
    from iris.pseudolabel.synthetic import clustered_pool
    from iris.store import open_store
    from iris.workdir import init_workdir

    workdir = init_workdir(work)
    settings = workdir.settings()
    tic = time.perf_counter()
    pool = clustered_pool(
        n, dim=dim, n_labeled=labeled, n_test=test, blobs_per_class=16, spread=1.2, seed=seed
    )
    store = open_store(workdir, settings)
    pool.load_into(store)
    store.close()  # builds HNSW, as the embed stage leaves it
    return {"load s": round(time.perf_counter() - tic, 1), "load peak RSS GiB": _peak_gib()}


def stage(work: Path, *, with_map: bool) -> dict[str, object]:
    from iris.pseudolabel.stage import pseudolabel
    from iris.select import select
    from iris.store import open_store
    from iris.workdir import Workdir

    workdir = Workdir(work)
    settings = workdir.settings()
    settings = replace(settings, select=replace(settings.select, map_points=0))
    store = open_store(workdir, settings)
    tic, cpu = time.perf_counter(), _cpu_s()
    report = pseudolabel(workdir, settings, store)
    print(
        f"pseudolabel done in {report.seconds:.1f} s ({_cpu_s() - cpu:.1f} CPU s, peak {_peak_gib()} GiB): "
        f"{report.timings}",
        file=sys.stderr,
        flush=True,
    )
    reindex = time.perf_counter()
    optimize = getattr(store, "optimize", None)
    if callable(optimize):
        optimize()  # what the payload writes left to re-index; the next query would do it
    reindex_s = time.perf_counter() - reindex
    sel = select(workdir, settings, store)
    stage_s, stage_cpu = time.perf_counter() - tic, _cpu_s() - cpu
    map_s = None
    if with_map:
        mapped = replace(settings, select=replace(settings.select, map_points=2000))
        tic = time.perf_counter()
        select(workdir, mapped, store)
        map_s = time.perf_counter() - tic - sel.seconds  # the select part is already known
    store.close()
    qdrant = report.qdrant_seconds + sel.qdrant_seconds + reindex_s
    return {
        "pseudolabel s": round(report.seconds, 1),
        "reindex s": round(reindex_s, 1),
        "select s": round(sel.seconds, 1),
        "stage s": round(stage_s, 1),
        "stage min": round(stage_s / 60, 1),
        "stage cpu s": round(stage_cpu, 1),
        "peak RSS GiB": _peak_gib(),
        "qdrant share": f"{qdrant / stage_s:.0%}",
        "knn s": round(report.timings["knn"], 1),
        "kmeans s": round(report.timings["kmeans"], 1),
        "estimate s": round(report.timings["estimate"], 1),
        "neighbours s": round(sel.timings["neighbours"], 1),
        "auto": f"{report.auto_fraction:.1%}",
        "problematic": f"{report.problematic_fraction:.1%}",
        "shortlist": f"{sel.shortlist_fraction:.1%}",
        "map s": "-" if map_s is None else round(map_s, 1),
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux


def _child(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=True, env=os.environ
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each size's work directory under this folder and reuse it when it is already "
        "loaded (the stages only read the store, so a second run measures the same thing)",
    )
    parser.add_argument("--_load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_stage", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._load:
        n = args._n
        print(
            json.dumps(
                load(
                    args._load,
                    n,
                    dim=args.dim,
                    labeled=args.labeled,
                    test=int(n * args.test_share),
                    seed=args.seed,
                )
            )
        )
        return 0
    if args._stage:
        print(json.dumps(stage(args._stage, with_map=not args.no_map)))
        return 0

    from iris.cli._common import echo_table

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            common = ["--dim", str(args.dim), "--labeled", str(args.labeled), "--seed", str(args.seed)]
            work = Path(tmp) / "work"
            if args.keep:
                work = args.keep / f"{n}-{args.dim}d-{args.labeled}-seed{args.seed}"
            done = work / "loaded.json"
            if done.exists():
                loaded = json.loads(done.read_text())
            else:
                loaded = _child(
                    "--_load", str(work), "--_n", str(n), "--test-share", str(args.test_share), *common
                )
                done.write_text(json.dumps(loaded))
            print(f"loaded {n}: {loaded}", file=sys.stderr, flush=True)
            timed = _child("--_stage", str(work), *(["--no-map"] if args.no_map else []))
        rows.append({"vectors": n, "dim": args.dim, "labeled": args.labeled, **loaded, **timed})
        print(f"done {rows[-1]}", file=sys.stderr, flush=True)
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    echo_table(
        rows,
        title=f"pseudolabel + select on {os.cpu_count()} CPU cores (Qdrant Edge), load average {load_avg}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
