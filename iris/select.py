"""The crowd's shortlist: problematic images plus their neighbours, under an optional budget.

An unlabeled pool image joins the shortlist when it is problematic, or when a problematic
image is among its ``k`` nearest neighbours (all gt and pool images, itself excluded;
test images are never neighbours). The neighbour lists come from batched Qdrant queries.

Priority (0 = sent first), which is also the order a budget cuts from the end:

1. problematic images before neighbours;
2. then more problematic neighbours first (dense ambiguous regions teach the most);
3. then a lower ensemble share first (the more unsure, the earlier);
4. then the id, so the order is total and reproducible.

Ground-truth images and test images are never on the shortlist. Labels a later stage gave
(crowd, auto, propagated: propagate writes them into the payload) do not count: a redone
select on a finished work directory shortlists what a fresh run does.

A new shortlist after a campaign loses nothing: the campaign keeps every image it bought
(with its answers) and buys only the images that are new on the shortlist, as a new round
(:func:`iris.crowd.campaign.launch`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from iris.config import Settings
from iris.contract import StageContext, StageReport
from iris.errors import StageOrderError
from iris.pseudolabel.consensus import AUTO, PROBLEMATIC
from iris.pseudolabel.kmeans import normalise
from iris.shortlist import NEIGHBOUR, build_shortlist, count_problematic_neighbours
from iris.stagekit import CLUSTERED_SPLITS, HITS_CHUNK, Stopwatch, batched_query, exact_search, read_points
from iris.store.base import Filter, Hit, VectorStore
from iris.tables import PSEUDOLABELS, read, write
from iris.workdir import Workdir

NEIGHBOURHOOD = Filter(must={"split": list(CLUSTERED_SPLITS)})


@dataclass(frozen=True)
class SelectReport(StageReport):
    """Counts of one selection (fractions are of the pool)."""

    pool: int
    problematic: int
    neighbours: int
    shortlist: int
    cut_by_budget: int
    budget: int
    k: int
    seconds: float
    qdrant_seconds: float
    neighbour_fraction: float = 0.0
    shortlist_fraction: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def select(workdir: Workdir, settings: Settings, store: VectorStore) -> SelectReport:
    """Write ``tables/shortlist.parquet`` (the store is only read, as in pseudolabel).

    The embedding map is :func:`iris.report.embedding_map.embedding_map`'s to draw, from
    the tables this writes.

    Raises:
        StageOrderError: no pseudolabels table yet (run ``iris pseudolabel``).
    """
    started = time.perf_counter()
    s = settings.select
    pseudolabels = read(workdir.table("pseudolabels"), PSEUDOLABELS)
    watch = Stopwatch()
    with watch.phase("export"):
        points = read_points(store, watch)
    # Only pool images without a ground-truth label (read_points leaves crowd, automatic and
    # propagated labels out), so a redo after propagate sees the pool of a fresh run.
    row_of = {int(i): r for r, i in enumerate(points.exported.ids.tolist())}
    pool_ids = set(points.exported.ids[points.pool].tolist())
    pseudolabels = pseudolabels.filter(pl.col("id").is_in(list(pool_ids))).sort("id")
    if pseudolabels.is_empty() and pool_ids:
        raise StageOrderError(
            f"{workdir.table('pseudolabels')} holds none of the {len(pool_ids)} pool points in the store; "
            "run `iris pseudolabel` again"
        )
    ids = pseudolabels["id"].to_numpy().astype(np.int64)
    rows = np.array([row_of[int(i)] for i in ids], dtype=np.int64)
    problematic = set(pseudolabels.filter(pl.col("status") == PROBLEMATIC)["id"].to_list())

    exact = exact_search(store, s.exact, settings.store.exact_max_points)
    outside = set(points.exported.ids[~np.isin(points.split, CLUSTERED_SPLITS)].tolist())
    with watch.phase("neighbours"):
        counts = np.zeros(len(rows), dtype=np.int32)
        # A chunk at a time, ids only: a million images' hit lists would not fit in memory.
        for start in range(0, len(rows), HITS_CHUNK):
            part = slice(start, start + HITS_CHUNK)
            hits = _neighbourhoods(
                store,
                normalise(points.exported.vectors[rows[part]]),
                k=s.neighbours + 1,  # the image itself usually comes back first and is dropped
                outside=outside,
                share_outside=len(outside) / max(len(points.split), 1),
                batch_size=s.batch_size,
                exact=exact,
                watch=watch,
            )
            counts[part] = count_problematic_neighbours(hits, ids[part], problematic, k=s.neighbours)

    shortlist, cut = build_shortlist(pseudolabels, counts, budget=s.budget)
    write(shortlist, workdir.table("shortlist"))

    n_pool = int(points.pool.sum())
    n_neighbours = int((shortlist["reason"] == NEIGHBOUR).sum())
    return SelectReport(
        pool=n_pool,
        problematic=len(problematic),
        neighbours=n_neighbours,
        shortlist=shortlist.height,
        cut_by_budget=cut,
        budget=s.budget,
        k=s.neighbours,
        seconds=time.perf_counter() - started,
        qdrant_seconds=watch.seconds,
        neighbour_fraction=n_neighbours / n_pool if n_pool else 0.0,
        shortlist_fraction=shortlist.height / n_pool if n_pool else 0.0,
        timings=watch.timings(),
    )


def _neighbourhoods(
    store: VectorStore,
    vectors: npt.NDArray[np.float32],
    *,
    k: int,
    outside: set[int],
    share_outside: float,
    batch_size: int,
    exact: bool,
    watch: Stopwatch,
) -> list[list[Hit]]:
    """Each vector's ``k`` nearest points among gt and pool (never a test image), best first.

    Asked without a filter for a few more than ``k`` and the test images dropped: an
    unfiltered HNSW search was 1.5 times faster than one filtered on the split (300K points).
    Rows left with fewer than ``k`` (test images crowded them out) are asked again with the
    filter, so the result is the filtered search's.
    """

    def ask(queries: npt.NDArray[np.float32], n: int, flt: Filter | None, desc: str) -> list[list[Hit]]:
        return batched_query(
            store,
            queries,
            k=n,
            flt=flt,
            batch_size=batch_size,
            exact=exact,
            desc=desc,
            watch=watch,
            with_payload=False,
        )

    if not outside:
        return ask(vectors, k, None, "neighbours")
    extra = max(2, math.ceil(k * share_outside * 3))
    hits = ask(vectors, k + extra, None, "neighbours")
    kept = [[h for h in row if h.id not in outside][:k] for row in hits]
    short = [
        r
        for r, (row, full) in enumerate(zip(kept, hits, strict=True))
        if len(row) < k and len(full) == k + extra
    ]
    if short:
        again = ask(vectors[short], k, NEIGHBOURHOOD, "neighbours (crowded by test images)")
        for r, row in zip(short, again, strict=True):
            kept[r] = row
    return kept


def run(ctx: StageContext) -> SelectReport:
    """The select stage (:func:`select` over ``ctx.store``)."""
    return select(ctx.workdir, ctx.settings, ctx.store)


__all__ = [
    "AUTO",
    "NEIGHBOUR",
    "PROBLEMATIC",
    "SelectReport",
    "build_shortlist",
    "count_problematic_neighbours",
    "select",
]
