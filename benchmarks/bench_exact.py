"""What exact kNN queries cost against HNSW, stage by stage: pseudolabel, select, propagate.

    python benchmarks/bench_exact.py                       # the demo's size: 14,000 points, 512-d
    python benchmarks/bench_exact.py --n 14000 --dim 1280  # EfficientNet-Lite0's width

One work directory is filled as ingest and embed leave it (synthetic clustered vectors in
Qdrant Edge, closed so that HNSW is built, the images table), then copied once per run, so
every run starts from the same store on disk. Each run does pseudolabel → select →
propagate with ``exact`` true or false in all three, in this process. The approximate
setting runs twice: the columns "≠ run 1" count the images whose shortlist membership or
final label differs from the first run of the same setting (0 for exact, by design).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")


def fill(work: Path, *, n: int, dim: int, labeled: int, test: int, seed: int) -> float:
    from iris import tables
    from iris.pseudolabel.synthetic import clustered_pool
    from iris.store import open_store
    from iris.workdir import init_workdir

    tic = time.perf_counter()
    workdir = init_workdir(work)
    pool = clustered_pool(
        n, dim=dim, n_labeled=labeled, n_test=test, blobs_per_class=16, spread=1.2, seed=seed
    )
    store = open_store(workdir, workdir.settings())
    pool.load_into(store)
    store.close()  # builds HNSW, as the embed stage leaves it
    tables.write(pool.images(), workdir.table("images"))
    return time.perf_counter() - tic


def run(work: Path, *, exact: bool) -> dict[str, object]:
    import polars as pl

    from iris import propagate, select
    from iris.contract import StageContext
    from iris.pseudolabel import stage as pseudolabel
    from iris.workdir import Workdir

    workdir = Workdir(work)
    base = workdir.settings()
    settings = replace(
        base,
        pseudolabel=replace(base.pseudolabel, exact=exact),
        select=replace(base.select, exact=exact, map_points=0),
        propagate=replace(base.propagate, exact=exact),
    )
    row: dict[str, object] = {}
    with StageContext(workdir, settings, echo=lambda _: None) as ctx:
        for name, module in (("pseudolabel", pseudolabel), ("select", select), ("propagate", propagate)):
            tic = time.perf_counter()
            module.run(ctx)
            row[f"{name} s"] = time.perf_counter() - tic
    row["total s"] = sum(v for v in row.values() if isinstance(v, float))
    row["shortlist"] = set(pl.read_parquet(workdir.table("shortlist"))["id"].to_list())
    row["final"] = pl.read_parquet(workdir.table("final_labels")).select("id", "label")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=14_000, help="points in the store (the demo: 14,000)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--labeled", type=int, default=200)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-exact-"))
    try:
        filled = fill(
            root / "filled", n=args.n, dim=args.dim, labeled=args.labeled, test=args.test, seed=args.seed
        )
        print(
            f"{args.n:,} points × {args.dim}-d ({args.labeled} labeled, {args.test:,} test), "
            f"Qdrant Edge, {os.cpu_count()} CPUs; store filled and indexed in {filled:.1f} s\n"
        )
        header = (
            "| queries | pseudolabel s | select s | propagate s | total s | shortlist "
            "| shortlist ≠ run 1 | final labels ≠ run 1 |"
        )
        print(header)
        print("|---" * (header.count("|") - 1) + "|", flush=True)
        first: dict[str, dict[str, object]] = {}
        for number, (label, exact) in enumerate(
            (("exact", True), ("HNSW", False), ("exact", True), ("HNSW", False))
        ):
            work = root / f"run{number}"
            shutil.copytree(root / "filled", work)
            row = run(work, exact=exact)
            shutil.rmtree(work)
            ref = first.setdefault(label, row)
            shortlist, ref_shortlist = row["shortlist"], ref["shortlist"]
            assert isinstance(shortlist, set) and isinstance(ref_shortlist, set)
            final, ref_final = row["final"], ref["final"]
            joined = final.join(ref_final, on="id", suffix="_ref")  # type: ignore[attr-defined]
            changed = int((joined["label"] != joined["label_ref"]).sum())
            times = " | ".join(
                f"{row[c]:.1f}" for c in ("pseudolabel s", "select s", "propagate s", "total s")
            )
            print(
                f"| {label} | {times} | {len(shortlist):,} | {len(shortlist ^ ref_shortlist):,} "
                f"| {changed:,} |",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
