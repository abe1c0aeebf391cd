"""Shortlist building: priorities and budget on a toy table, then the stage on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from iris.config import Settings
from iris.errors import StageOrderError
from iris.pseudolabel.stage import pseudolabel
from iris.pseudolabel.synthetic import SyntheticPool, clustered_pool
from iris.select import build_shortlist, count_problematic_neighbours, select
from iris.store import open_store
from iris.store.base import Hit, VectorStore
from iris.tables import SHORTLIST, read
from iris.workdir import Workdir

TOY = pl.DataFrame(
    {
        "id": [10, 11, 12, 13, 14, 15],
        "status": ["problematic", "auto", "problematic", "auto", "auto", "problematic"],
        "knn_share": [0.5, 1.0, 0.2, 0.9, 1.0, 0.5],
    }
)
TOY_COUNTS = np.array([1, 2, 1, 0, 3, 4], dtype=np.int32)
# Expected: problematic first (15 has 4 problematic neighbours; 12 and 10 have 1, 12 is
# less sure), then neighbours by count (14: 3, 11: 2); 13 has none and stays out.
TOY_ORDER = [15, 12, 10, 14, 11]


def test_priority_is_problematic_then_count_then_unsureness() -> None:
    shortlist, cut = build_shortlist(TOY, TOY_COUNTS)
    assert shortlist["id"].to_list() == TOY_ORDER
    assert shortlist["priority"].to_list() == [0, 1, 2, 3, 4]
    assert shortlist["reason"].to_list() == ["problematic"] * 3 + ["neighbour"] * 2
    assert shortlist["problematic_neighbours"].to_list() == [4, 1, 1, 3, 2]
    assert cut == 0
    assert dict(shortlist.schema) == SHORTLIST


@pytest.mark.parametrize("budget", [1, 3, 4, 5, 9])
def test_budget_cuts_from_the_end(budget: int) -> None:
    shortlist, cut = build_shortlist(TOY, TOY_COUNTS, budget=budget)
    assert shortlist["id"].to_list() == TOY_ORDER[:budget]
    assert cut == max(0, len(TOY_ORDER) - budget)


def test_neighbour_counts_skip_the_image_itself() -> None:
    hits = [[Hit(1, 1.0), Hit(2, 0.9), Hit(3, 0.8)], [Hit(3, 0.95), Hit(2, 0.9), Hit(1, 0.8)]]
    counts = count_problematic_neighbours(hits, np.array([1, 2]), {1, 3}, k=2)
    # Image 1: neighbours 2, 3 -> one problematic; image 2: neighbours 3, 1 -> two.
    assert counts.tolist() == [1, 2]


@pytest.fixture
def pool() -> SyntheticPool:
    return clustered_pool(500, dim=16, n_labeled=50, n_test=50, blobs_per_class=4, seed=3)


@pytest.fixture
def store(workdir: Workdir, pool: SyntheticPool) -> Iterator[VectorStore]:
    opened = open_store(workdir, workdir.settings())
    pool.load_into(opened)
    yield opened
    opened.close()


def quick(workdir: Workdir, **select_values: object) -> Settings:
    settings = workdir.settings()
    return replace(
        settings,
        pseudolabel=replace(settings.pseudolabel, estimate_folds=0),
        select=replace(settings.select, **{"map_points": 0, **select_values}),
    )


def test_select_before_pseudolabel_names_the_command(workdir: Workdir, store: VectorStore) -> None:
    with pytest.raises(StageOrderError, match="iris pseudolabel"):
        select(workdir, quick(workdir), store)


def test_shortlist_and_statuses(workdir: Workdir, store: VectorStore, pool: SyntheticPool) -> None:
    from iris import tables
    from iris.statuses import status_filter, statuses

    tables.write(pool.images(), workdir.table("images"))
    settings = quick(workdir)
    pseudolabel(workdir, settings, store)
    report = select(workdir, settings, store)
    shortlist = read(workdir.table("shortlist"), SHORTLIST)
    table = pl.read_parquet(workdir.table("pseudolabels"))
    problematic = set(table.filter(pl.col("status") == "problematic")["id"].to_list())
    assert set(shortlist.filter(pl.col("reason") == "problematic")["id"].to_list()) == problematic
    assert report.shortlist == shortlist.height == report.problematic + report.neighbours
    assert report.neighbours > 0
    assert not set(shortlist["id"].to_list()) & set(pool.ids[pool.split != "pool"].tolist())
    neighbours = set(shortlist.filter(pl.col("reason") == "neighbour")["id"].to_list())
    current = statuses(workdir)
    assert current is not None
    status = dict(current.select("id", "status").iter_rows())
    for point_id in table["id"].to_list():
        expected = (
            "neighbour" if point_id in neighbours else ("problematic" if point_id in problematic else "auto")
        )
        assert status[point_id] == expected
    # `iris similar --status neighbour` finds exactly those in the store.
    flt = status_filter(workdir, ["neighbour"])
    assert flt is not None and store.ids(flt) == neighbours


def test_a_rerun_with_a_budget_leaves_no_stale_neighbours(
    workdir: Workdir, store: VectorStore, pool: SyntheticPool
) -> None:
    from iris import tables
    from iris.statuses import counts

    tables.write(pool.images(), workdir.table("images"))
    pseudolabel(workdir, quick(workdir), store)
    select(workdir, quick(workdir), store)
    assert (counts(workdir) or {}).get("neighbour", 0) > 0
    report = select(workdir, quick(workdir, budget=5), store)
    assert report.shortlist == 5
    assert report.cut_by_budget > 0
    assert store.count(None) == 500
    marked = (counts(workdir) or {}).get("neighbour", 0)
    shortlist = pl.read_parquet(workdir.table("shortlist"))
    assert marked == (shortlist["reason"] == "neighbour").sum()


def test_the_map_is_drawn_by_the_report_not_the_stage(workdir: Workdir, store: VectorStore) -> None:
    from iris.report.embedding_map import embedding_map

    settings = quick(workdir, map_points=120)
    pseudolabel(workdir, settings, store)
    select(workdir, settings, store)
    png = workdir.reports / "embedding_map.png"
    assert not png.exists()
    assert embedding_map(workdir, settings, store) == png
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_unfiltered_neighbourhoods_equal_the_filtered_search(tmp_path) -> None:
    """Asked unfiltered and refilled where test images crowd a row out, the neighbour lists are
    exactly those of a search filtered on the split (test images packed round some queries)."""
    from iris.select import NEIGHBOURHOOD, _neighbourhoods
    from iris.stagekit import Stopwatch, batched_query
    from iris.store import EdgeStore

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    split = np.array(["pool"] * 300 + ["test"] * 100)
    # 100 test images sit right next to the first 10 pool images: those rows are crowded.
    vectors[300:] = np.repeat(vectors[:10], 10, axis=0) + rng.normal(scale=1e-3, size=(100, 8)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with EdgeStore(tmp_path) as store:
        store.upsert(np.arange(400), vectors, [{"split": str(s)} for s in split])
        queries = vectors[:300]
        got = _neighbourhoods(
            store,
            queries,
            k=6,
            outside=set(range(300, 400)),
            share_outside=0.25,
            batch_size=64,
            exact=True,
            watch=Stopwatch(),
        )
        want = batched_query(
            store, queries, k=6, flt=NEIGHBOURHOOD, batch_size=64, exact=True, desc="x", with_payload=False
        )
    assert [[h.id for h in row] for row in got] == [[h.id for h in row] for row in want]
    assert all(len(row) == 6 for row in got)
