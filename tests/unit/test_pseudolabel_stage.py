"""The pseudolabel stage on a small synthetic pool in a real Qdrant Edge store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from iris.config import Settings
from iris.errors import ConfigError, InputError, StageOrderError
from iris.pseudolabel.stage import pseudolabel
from iris.pseudolabel.synthetic import SyntheticPool, clustered_pool
from iris.store import open_store
from iris.store.base import VectorStore
from iris.tables import PSEUDOLABELS, read
from iris.workdir import Workdir


@pytest.fixture
def pool() -> SyntheticPool:
    return clustered_pool(600, dim=16, n_labeled=60, n_test=60, blobs_per_class=4, spread=1.0, seed=1)


@pytest.fixture
def store(workdir: Workdir, pool: SyntheticPool) -> Iterator[VectorStore]:
    opened = open_store(workdir, workdir.settings())
    pool.load_into(opened)
    yield opened
    opened.close()


def settings_for(workdir: Workdir, **pseudolabel: object) -> Settings:
    settings = workdir.settings()
    return replace(settings, pseudolabel=replace(settings.pseudolabel, **pseudolabel))


def test_every_unlabeled_pool_image_gets_a_row(
    workdir: Workdir, store: VectorStore, pool: SyntheticPool
) -> None:
    report = pseudolabel(workdir, workdir.settings(), store)
    table = read(workdir.table("pseudolabels"), PSEUDOLABELS)
    pool_ids = set(pool.ids[pool.split == "pool"].tolist())
    assert set(table["id"].to_list()) == pool_ids
    assert report.pool == len(pool_ids) == report.auto + report.problematic
    assert report.labeled == 60
    assert set(table["status"].unique().to_list()) <= {"auto", "problematic"}
    auto = table.filter(pl.col("status") == "auto")
    # Auto labels are exactly where the ensemble and the clusters agree.
    assert (auto["auto_label"] == auto["knn_label"]).all()
    assert (auto["auto_label"] == auto["cluster_label"]).all()
    assert table.filter(pl.col("status") == "problematic")["auto_label"].null_count() == report.problematic
    # The synthetic task is learnable: automatic labels are mostly right.
    truth = dict(zip(pool.ids.tolist(), pool.truth.tolist(), strict=True))
    right = np.mean([truth[i] == lab for i, lab in auto.select("id", "auto_label").iter_rows()])
    assert right > 0.9
    assert 0 < report.problematic < report.pool
    assert report.estimate_n == 60 and report.estimate_accuracy is not None


def test_member_votes_keep_one_column_per_member(workdir: Workdir, store: VectorStore) -> None:
    settings = workdir.settings()
    pseudolabel(workdir, settings, store)
    votes = pl.read_parquet(workdir.table("member_votes"))
    assert votes.columns == ["id", *settings.pseudolabel.members]
    assert all(votes[m].dtype == pl.Int8 for m in settings.pseudolabel.members)
    table = pl.read_parquet(workdir.table("pseudolabels"))
    assert votes.height == table.height


def test_the_store_is_only_read_and_the_statuses_come_from_the_table(
    workdir: Workdir, store: VectorStore, pool: SyntheticPool
) -> None:
    from iris import tables
    from iris.statuses import statuses

    tables.write(pool.images(), workdir.table("images"))
    before = {i: p for i, p, _ in store.retrieve(pool.ids.tolist())}
    pseudolabel(workdir, workdir.settings(), store)
    # A payload write would move the points out of their HNSW segment (a re-index at 1M).
    assert {i: p for i, p, _ in store.retrieve(pool.ids.tolist())} == before
    table = pl.read_parquet(workdir.table("pseudolabels"))
    current = statuses(workdir)
    assert current is not None
    joined = current.join(table.select("id", "status", "auto_label"), on="id", how="left", suffix="_t")
    pooled = joined.filter(pl.col("status_t").is_not_null())
    assert pooled.height == table.height
    assert (pooled["status"] == pooled["status_t"]).all()
    assert pooled["pseudo_label"].to_list() == pooled["auto_label"].to_list()
    others = dict(joined.filter(pl.col("status_t").is_null()).select("id", "status").iter_rows())
    assert others and all(others[i] == before[i]["status"] for i in others)  # gt and test as embed left them


def test_without_kmeans_the_ensemble_alone_decides(workdir: Workdir, store: VectorStore) -> None:
    pseudolabel(workdir, settings_for(workdir, use_kmeans=False, estimate_folds=0), store)
    table = pl.read_parquet(workdir.table("pseudolabels"))
    assert table["cluster_label"].null_count() == table.height
    assert ((table["status"] == "auto") == table["knn_label"].is_not_null()).all()


def test_an_empty_store_names_the_stage_to_run(workdir: Workdir) -> None:
    store = open_store(workdir, workdir.settings())
    try:
        with pytest.raises(StageOrderError, match="iris embed"):
            pseudolabel(workdir, workdir.settings(), store)
    finally:
        store.close()


def test_a_store_without_labels_is_refused(workdir: Workdir) -> None:
    unlabeled = clustered_pool(50, dim=8, n_labeled=0, seed=2)
    store = open_store(workdir, workdir.settings())
    try:
        unlabeled.load_into(store)
        with pytest.raises(StageOrderError, match="0 labeled point"):
            pseudolabel(workdir, workdir.settings(), store)
    finally:
        store.close()


def test_a_ground_truth_of_one_class_is_refused_with_the_counts(
    workdir: Workdir, pool: SyntheticPool
) -> None:
    one_class = replace(pool, truth=np.where(pool.split == "gt", 1, pool.truth))
    store = open_store(workdir, workdir.settings())
    try:
        one_class.load_into(store)
        with pytest.raises(InputError) as raised:
            pseudolabel(workdir, workdir.settings(), store)
    finally:
        store.close()
    assert str(raised.value) == (
        "the ground truth holds 60 labeled images: 0 of class 0 (deciduous) and 60 of class 1 (conifer); "
        "the kNN ensemble needs labeled images of both classes: add some to the ground-truth manifest"
    )
    assert not workdir.table("pseudolabels").exists()


def test_held_out_labels_of_one_class_are_not_an_estimate_on_their_own(
    workdir: Workdir, store: VectorStore, pool: SyntheticPool
) -> None:
    gt = pool.ids[pool.split == "gt"]
    truth = dict(zip(pool.ids.tolist(), pool.truth.tolist(), strict=True))
    # The fine-tune held out only images of class 1: scoring those alone would say nothing.
    store.set_payload({int(i): {"finetune": "heldout" if truth[int(i)] == 1 else "train"} for i in gt})
    report = pseudolabel(workdir, settings_for(workdir, estimate_folds=3), store)
    assert report.estimate_n == 60
    assert report.estimate_method.endswith("on labels the backbone was tuned on: optimistic")
    assert report.estimate_accuracy is not None


def test_a_member_name_that_does_not_parse_is_a_config_error(workdir: Workdir, store: VectorStore) -> None:
    # Ranges of [pseudolabel] are checked when the settings load (tests/unit/test_config.py);
    # settings built in code still meet the member parser.
    with pytest.raises(ConfigError, match="k5-bad"):
        pseudolabel(workdir, settings_for(workdir, members=("k5-bad",)), store)


def test_edge_and_qdrant_client_stores_give_the_same_tables(tmp_path: Path) -> None:
    """The stage only speaks the VectorStore protocol: the server code path (qdrant-client's
    local mode here, brute force in Python, hence a small pool) must label and shortlist
    exactly as the embedded Edge store does."""
    from iris.select import select
    from iris.store import ServerStore
    from iris.workdir import init_workdir

    pool = clustered_pool(100, dim=8, n_labeled=14, n_test=6, blobs_per_class=3, spread=1.2, seed=4)
    tables = []
    for name in ("edge", "server"):
        workdir = init_workdir(tmp_path / name)
        settings = settings_for(workdir, estimate_folds=3)
        settings = replace(settings, select=replace(settings.select, map_points=0))
        store: VectorStore = open_store(workdir, settings) if name == "edge" else ServerStore.local()
        try:
            pool.load_into(store)
            report = pseudolabel(workdir, settings, store)
            select(workdir, settings, store)
        finally:
            store.close()
        tables.append(
            (
                report.estimate_accuracy,
                *(pl.read_parquet(workdir.table(t)) for t in ("pseudolabels", "member_votes", "shortlist")),
            )
        )
    edge, server = tables
    assert edge[0] == server[0]
    for a, b in zip(edge[1:], server[1:], strict=True):
        assert a.equals(b)


def test_the_estimate_skips_labels_the_backbone_was_tuned_on(
    workdir: Workdir, store: VectorStore, pool: SyntheticPool
) -> None:
    gt = pool.ids[pool.split == "gt"].tolist()
    store.set_payload({i: {"finetune": "train" if n % 3 else "heldout"} for n, i in enumerate(gt)})
    report = pseudolabel(workdir, settings_for(workdir, estimate_folds=3), store)
    assert report.estimate_n == len(gt[::3]) == 20
    assert report.estimate_method.endswith("on labels the fine-tune held out")
    assert report.labeled == 60  # every label still votes
    assert report.estimate_low is not None and report.estimate_high is not None
    assert report.estimate_low <= (report.estimate_accuracy or 0) <= report.estimate_high
