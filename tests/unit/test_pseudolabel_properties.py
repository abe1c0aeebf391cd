"""Invariants of pseudolabel + select on small synthetic pools in real Qdrant Edge stores."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from iris.config import Settings
from iris.pseudolabel.knn import ensemble_vote
from iris.pseudolabel.members import parse_members
from iris.pseudolabel.stage import pseudolabel
from iris.pseudolabel.synthetic import SyntheticPool, clustered_pool
from iris.select import select
from iris.store import open_store
from iris.store.base import Hit, VectorStore
from iris.workdir import Workdir, init_workdir

EXAMPLES = settings(max_examples=8, deadline=None, derandomize=True)


@dataclass(frozen=True)
class Case:
    pool: SyntheticPool
    settings: Settings


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(40, 160))
    pool = clustered_pool(
        n,
        dim=draw(st.integers(3, 12)),
        n_labeled=draw(st.integers(4, 20)),
        n_test=draw(st.integers(0, 10)),
        blobs_per_class=draw(st.integers(1, 4)),
        spread=draw(st.floats(0.3, 3.0)),
        seed=draw(st.integers(0, 10_000)),
    )
    # A ground truth of one class is refused by the stage (tests/unit/test_pseudolabel_stage.py).
    assume(len(set(pool.truth[pool.split == "gt"].tolist())) == 2)
    members = draw(
        st.lists(
            st.sampled_from(
                ["k1-uniform", "k3-uniform", "k5-distance", "k7-distance-euclid", "k4-uniform-dot"]
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    base = Settings()
    return Case(
        pool=pool,
        settings=replace(
            base,
            pseudolabel=replace(
                base.pseudolabel,
                members=tuple(members),
                confidence=draw(st.floats(0.5, 1.0)),
                quorum=draw(st.floats(0.3, 1.0)),
                use_kmeans=draw(st.booleans()),
                estimate_folds=0,
                seed=draw(st.integers(0, 100)),
            ),
            select=replace(
                base.select,
                neighbours=draw(st.integers(1, 6)),
                budget=draw(st.sampled_from([0, 0, 1, 5, 20, 60])),
                map_points=0,
            ),
        ),
    )


@contextmanager
def loaded(case: Case) -> Iterator[tuple[Workdir, VectorStore]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = init_workdir(Path(tmp) / "w")
        store = open_store(workdir, case.settings)
        try:
            case.pool.load_into(store)
            yield workdir, store
        finally:
            store.close()


def run_stage(workdir: Workdir, settings: Settings, store: VectorStore) -> dict[str, pl.DataFrame]:
    pseudolabel(workdir, settings, store)
    select(workdir, settings, store)
    return {
        name: pl.read_parquet(workdir.table(name)) for name in ("pseudolabels", "member_votes", "shortlist")
    }


@EXAMPLES
@given(cases())
def test_labeled_and_test_images_are_never_shortlisted_nor_relabeled(case: Case) -> None:
    pool = case.pool
    others = pool.ids[pool.split != "pool"].tolist()
    with loaded(case) as (workdir, store):
        before = {i: p for i, p, _ in store.retrieve(others)}
        tables = run_stage(workdir, case.settings, store)
        after = {i: p for i, p, _ in store.retrieve(others)}
    assert after == before
    assert not set(others) & set(tables["pseudolabels"]["id"].to_list())
    assert not set(others) & set(tables["shortlist"]["id"].to_list())
    assert set(tables["pseudolabels"]["id"].to_list()) == set(pool.ids[pool.split == "pool"].tolist())


@EXAMPLES
@given(cases())
def test_every_problematic_image_is_shortlisted_unless_the_budget_cut_it(case: Case) -> None:
    with loaded(case) as (workdir, store):
        tables = run_stage(workdir, case.settings, store)
    problematic = set(tables["pseudolabels"].filter(pl.col("status") == "problematic")["id"].to_list())
    shortlist = tables["shortlist"]
    listed = set(shortlist["id"].to_list())
    budget = case.settings.select.budget
    if budget == 0:
        assert problematic <= listed
    else:
        assert shortlist.height <= budget
        # Problematic images come first, so the budget cuts them only when they alone exceed it.
        assert len(problematic & listed) == min(budget, len(problematic))
    assert shortlist["priority"].to_list() == list(range(shortlist.height))
    assert shortlist["id"].n_unique() == shortlist.height


@EXAMPLES
@given(cases(), st.integers(1, 17))
def test_results_do_not_depend_on_batch_size(case: Case, batch_size: int) -> None:
    small = replace(
        case.settings,
        pseudolabel=replace(case.settings.pseudolabel, batch_size=batch_size),
        select=replace(case.settings.select, batch_size=batch_size),
    )
    with loaded(case) as (workdir, store):
        big_batches = run_stage(workdir, case.settings, store)
        small_batches = run_stage(workdir, small, store)
    for name, frame in big_batches.items():
        assert frame.equals(small_batches[name]), name


@settings(max_examples=4, deadline=None, derandomize=True)
@given(cases())
def test_same_seed_same_output(case: Case) -> None:
    with_estimate = replace(case.settings, pseudolabel=replace(case.settings.pseudolabel, estimate_folds=3))
    with loaded(case) as (workdir, store):
        first = run_stage(workdir, with_estimate, store)
        report_1 = pseudolabel(workdir, with_estimate, store)
    with loaded(case) as (workdir, store):
        second = run_stage(workdir, with_estimate, store)
        report_2 = pseudolabel(workdir, with_estimate, store)
    for name, frame in first.items():
        assert frame.equals(second[name]), name
    assert (report_1.auto, report_1.estimate_auto, report_1.estimate_accuracy) == (
        report_2.auto,
        report_2.estimate_auto,
        report_2.estimate_accuracy,
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(0, 1), st.floats(-1, 1)), max_size=9), min_size=1, max_size=30),
    st.integers(1, 30),
)
def test_the_vote_of_an_image_depends_only_on_its_own_neighbours(
    rows: list[list[tuple[int, float]]], split_at: int
) -> None:
    hits = [
        [Hit(j, s, {"label": lab}) for j, (lab, s) in enumerate(sorted(row, key=lambda t: -t[1]))]
        for row in rows
    ]
    members = parse_members(["k1-uniform", "k5-distance", "k9-uniform-euclid"])
    whole = ensemble_vote(hits, members, confidence=0.6, quorum=0.6)
    head = ensemble_vote(hits[:split_at], members, confidence=0.6, quorum=0.6)
    tail = ensemble_vote(hits[split_at:], members, confidence=0.6, quorum=0.6) if hits[split_at:] else None
    parts = [head.member_labels] + ([tail.member_labels] if tail else [])
    assert np.array_equal(whole.member_labels, np.vstack(parts))
