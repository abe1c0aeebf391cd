"""A/B of the kNN stages: one synthetic store through pseudolabel, select and propagate.

Run it once per checkout, then compare the tables the two runs left::

    PYTHONPATH=/work/main IRIS_PROGRESS=0 python benchmarks/ab_knn_stages.py /tmp/ab/main
    PYTHONPATH=.          IRIS_PROGRESS=0 python benchmarks/ab_knn_stages.py /tmp/ab/branch
    python benchmarks/ab_knn_stages.py --compare /tmp/ab/main /tmp/ab/branch

6,000 clustered unit vectors (200 labeled, 300 test) plus 80 exact duplicates of labeled
images placed in the pool (they exercise the exact-match rule); the first 1,500 of the
shortlist get their true label as crowd answers. Uses only the functions every version
of iris has (``pseudolabel``, ``select``, ``propagate`` of workdir, settings, store).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

TABLES = ("pseudolabels", "member_votes", "shortlist", "final_labels", "final_conflicts")


def run(out: Path) -> None:
    from iris import tables
    from iris.config import Settings
    from iris.propagate import propagate
    from iris.pseudolabel.stage import pseudolabel
    from iris.pseudolabel.synthetic import SyntheticPool, clustered_pool
    from iris.select import select
    from iris.store import open_store
    from iris.workdir import init_workdir

    base = clustered_pool(6000, n_labeled=200, n_test=300, spread=1.6, seed=3)
    duplicated = np.random.default_rng(0).choice(np.flatnonzero(base.split == "gt"), 80, replace=False)
    pool = SyntheticPool(
        ids=np.concatenate([base.ids, np.arange(10**12, 10**12 + 80)]).astype(np.int64),
        vectors=np.concatenate([base.vectors, base.vectors[duplicated]]).astype(np.float32),
        truth=np.concatenate([base.truth, base.truth[duplicated]]),
        split=np.concatenate([base.split, np.array(["pool"] * 80, dtype=object)]),
    )
    workdir = init_workdir(out / "work", force=True)
    n = len(pool.ids)
    images = pl.DataFrame(
        {
            "id": pool.ids,
            "source": [str(i) for i in pool.ids],
            "path": [""] * n,
            "split": pool.split.astype(str),
            "label": [int(t) if s == "gt" else None for t, s in zip(pool.truth, pool.split, strict=True)],
            "width": [1] * n,
            "height": [1] * n,
            "sha256": [str(i) for i in pool.ids],
        }
    )
    tables.write(tables.check(images, tables.IMAGES, where="ab"), workdir.table("images"))
    settings = Settings()
    settings = replace(settings, select=replace(settings.select, map_points=0))
    truth = dict(zip(pool.ids.tolist(), pool.truth.tolist(), strict=True))
    with open_store(workdir, settings) as store:
        pool.load_into(store)
        reports = {
            "pseudolabel": pseudolabel(workdir, settings, store),
            "select": select(workdir, settings, store),
        }
        crowd = tables.read(workdir.table("shortlist")).head(1500)
        answers = pl.DataFrame(
            {
                "task": crowd["id"],
                "label": [truth[i] for i in crowd["id"]],
                "confidence": [0.9] * crowd.height,
                "n_answers": [3] * crowd.height,
            }
        )
        tables.write(tables.check(answers, tables.AGGREGATED, where="ab"), workdir.table("aggregated"))
        reports["propagate"] = propagate(workdir, settings, store)
    final = tables.read(workdir.table("final_labels"))
    skip = {"seconds", "qdrant_seconds", "timings", "grid", "final_labels", "map_path"}
    summary: dict[str, object] = {
        name: {k: getattr(r, k) for k in r.__dataclass_fields__ if k not in skip}
        for name, r in reports.items()
    }
    summary["final_accuracy"] = round(
        float(np.mean([truth[i] == lab for i, lab in final.select("id", "label").rows()])), 5
    )
    print(json.dumps(summary, indent=1, default=str))


def compare(a: Path, b: Path) -> None:
    print("| table | rows | same |\n|---|---:|---|")
    for name in TABLES:
        left = pl.read_parquet(a / "work" / "tables" / f"{name}.parquet")
        right = pl.read_parquet(b / "work" / "tables" / f"{name}.parquet")
        if left.equals(right):
            verdict = "identical"
        elif left.shape != right.shape:
            verdict = f"shape {left.shape} vs {right.shape}"
        else:
            parts = []
            for column in left.columns:
                if left[column].equals(right[column]):
                    continue
                if left[column].dtype.is_float():
                    gap = float((left[column] - right[column]).abs().max() or 0.0)
                    parts.append(f"{column}: max |diff| {gap:.2g}")
                else:
                    parts.append(
                        f"{column}: {int((left[column] != right[column]).fill_null(True).sum())} rows"
                    )
            verdict = "; ".join(parts)
        print(f"| {name} | {left.height} | {verdict} |")


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        run(Path(sys.argv[1]))
