"""Runs that are right or refuse (issue 11): a stage redone on a finished work directory
gives the tables of a fresh run, and two runs on the same store give the same tables.

The work directory is what ingest and embed leave (an images table and the vectors in a
real Qdrant Edge store; :meth:`SyntheticPool.write_workdir`), then ``run_pipeline`` runs
pseudolabel → select → crowd (simulated) → aggregate → propagate.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from iris.config import Settings, render_toml
from iris.contract import StageContext
from iris.pipeline import RunState, run_pipeline
from iris.pseudolabel.synthetic import SyntheticPool, clustered_pool
from iris.runplan import fingerprint, ingest_manifests
from iris.store import open_store
from iris.store.base import Filter, Hit, VectorStore
from iris.workdir import Workdir, init_workdir

TABLES = (
    "pseudolabels",
    "member_votes",
    "shortlist",
    "round_tasks",
    "rounds",
    "round_labels",
    "aggregated",
    "workers",
    "final_labels",
)


def _pool() -> SyntheticPool:
    return clustered_pool(600, dim=16, n_labeled=80, n_test=40, blobs_per_class=4, spread=1.0, seed=1)


def synthetic_workdir(root: Path, pool: SyntheticPool | None = None, *, strategy: str = "iris") -> Workdir:
    """A work directory with ingest and embed done, a simulated crowd and its answer key;
    the crowd stage buys in rounds picked by ``strategy`` (``seed``: one campaign on the
    shortlist)."""
    workdir = init_workdir(root)
    store = open_store(workdir, workdir.settings())
    key = (pool or _pool()).write_workdir(workdir, store)
    store.close()
    base = workdir.settings()
    settings = replace(
        base,
        select=replace(base.select, map_points=0),
        crowd=replace(base.crowd, backend="simulated", training=10, exam=10, answer_key=str(key)),
        rounds=replace(base.rounds, strategy=strategy),  # type: ignore[arg-type]
    )
    workdir.config.write_text(render_toml(settings), encoding="utf-8")
    # Ingest and embed count as finished on these tables and vectors: their fingerprints are
    # recorded as a real run records them, so the plan does not run them again.
    state = RunState(workdir)
    read = ingest_manifests(workdir, None)
    for stage in ("ingest", "embed"):
        state.finish(stage, {}, 0.0, inputs=fingerprint(stage, workdir, workdir.settings(), read))
    return workdir


def _run(workdir: Workdir, *, until: str, redo: tuple[str, ...] = ()) -> dict[str, Any]:
    state = run_pipeline(workdir, workdir.settings(), until=until, redo=redo, echo=lambda _: None)
    return {name: stage["summary"] for name, stage in state.data["stages"].items()}


def _tables(workdir: Workdir, names: tuple[str, ...] = TABLES) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(workdir.table(name)) for name in names if workdir.table(name).exists()}


def _payloads(workdir: Workdir) -> list[tuple[int, dict[str, Any]]]:
    store = open_store(workdir, workdir.settings())
    try:
        exported = store.export()
        return list(zip(exported.ids.tolist(), exported.payloads, strict=True))
    finally:
        store.close()


def _assert_same_tables(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].schema == want[name].schema, name
        assert got[name].equals(want[name]), name


@pytest.fixture(scope="module", params=["iris", "seed"])
def finished(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]]:
    """A work directory run through propagate (the crowd in rounds, or the seed's one
    campaign), with its summaries and tables as a fresh run left them."""
    workdir = synthetic_workdir(tmp_path_factory.mktemp("finished") / "work", strategy=request.param)
    summaries = _run(workdir, until="propagate")
    return workdir, summaries, _tables(workdir)


@pytest.mark.parametrize("stage", ["pseudolabel", "select", "crowd", "aggregate", "propagate"])
def test_a_stage_redone_after_propagate_gives_the_tables_of_a_fresh_run(
    finished: tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]], stage: str
) -> None:
    workdir, fresh, fresh_tables = finished
    # Propagation wrote a label for every pool image into the payload; only the ground truth votes.
    assert {p.get("origin") for _, p in _payloads(workdir) if p["split"] == "pool"} <= {
        "crowd",
        "auto",
        "propagated",
    }
    redone = _run(workdir, until="propagate", redo=(stage,))
    assert redone["pseudolabel"]["pool"] == fresh["pseudolabel"]["pool"] == 480
    assert redone["pseudolabel"]["labeled"] == fresh["pseudolabel"]["labeled"] == 80
    assert redone["pseudolabel"]["auto"] == fresh["pseudolabel"]["auto"]
    assert redone["pseudolabel"]["estimate_accuracy"] == fresh["pseudolabel"]["estimate_accuracy"]
    assert redone["select"]["shortlist"] == fresh["select"]["shortlist"] > 0
    if workdir.settings().rounds.loop:
        # Every round was recorded: the redone crowd stage draws none again and buys nothing.
        assert redone["crowd"]["rounds"] == fresh["crowd"]["rounds"] >= 1
        assert fresh["crowd"]["tasks"] == pl.read_parquet(workdir.table("round_tasks")).height > 0
    else:
        assert fresh["crowd"]["tasks"] == fresh["select"]["shortlist"]
    assert redone["crowd"]["tasks"] == fresh["crowd"]["tasks"]
    assert redone["crowd"]["answers"] == fresh["crowd"]["answers"]  # the campaign resumed: nothing re-bought
    _assert_same_tables(_tables(workdir), fresh_tables)


def test_two_work_directories_on_the_same_vectors_give_identical_tables_and_payloads(
    tmp_path: Path, finished: tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]]
) -> None:
    first, _, first_tables = finished
    second = synthetic_workdir(tmp_path / "second", strategy=first.settings().rounds.strategy)
    _run(second, until="propagate")
    _assert_same_tables(_tables(second), first_tables)
    assert _payloads(second) == _payloads(first)


class RecordingStore:
    """A store that records the ``exact`` flag of every query it passes on."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.exact: list[bool] = []

    def query_batch(
        self,
        vectors: np.ndarray,
        *,
        k: int,
        flt: Filter | None = None,
        exact: bool = False,
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        self.exact.append(exact)
        return self.inner.query_batch(vectors, k=k, flt=flt, exact=exact, with_payload=with_payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _stage_queries(workdir: Workdir, settings: Settings) -> dict[str, list[bool]]:
    from iris import propagate, select
    from iris.pseudolabel import stage as pseudolabel

    store = open_store(workdir, settings)
    try:
        flags: dict[str, list[bool]] = {}
        for name, module in (("pseudolabel", pseudolabel), ("select", select), ("propagate", propagate)):
            recording = RecordingStore(store)
            with StageContext(workdir, settings, store=recording, echo=lambda _: None) as ctx:  # type: ignore[arg-type]
                module.run(ctx)
            flags[name] = recording.exact
        return flags
    finally:
        store.close()


def test_every_neighbour_query_is_exact_by_default_and_follows_the_settings(tmp_path: Path) -> None:
    workdir = synthetic_workdir(tmp_path / "work", strategy="seed")  # propagate from the pseudo-labels
    settings = workdir.settings()
    assert settings.pseudolabel.exact and settings.select.exact and settings.propagate.exact
    flags = _stage_queries(workdir, settings)
    assert {name: set(f) for name, f in flags.items()} == {n: {True} for n in flags}
    approximate = replace(
        settings,
        pseudolabel=replace(settings.pseudolabel, exact=False),
        select=replace(settings.select, exact=False),
        propagate=replace(settings.propagate, exact=False),
    )
    flags = _stage_queries(workdir, approximate)
    assert {name: set(f) for name, f in flags.items()} == {n: {False} for n in flags}


def _nothing_for_the_crowd(root: Path, case: str) -> Workdir:
    if case == "empty pool":
        # Every image not in the test set is ground truth: nothing to pseudo-label.
        pool = _pool()
        workdir = synthetic_workdir(
            root, replace(pool, split=np.where(pool.split == "pool", "gt", pool.split)), strategy="seed"
        )
    else:
        # Well separated blobs and a lenient ensemble: every pool image is labeled automatically.
        pool = clustered_pool(600, dim=16, n_labeled=80, n_test=40, blobs_per_class=2, spread=0.2, seed=1)
        workdir = synthetic_workdir(root, pool, strategy="seed")  # the shortlist decides
        settings = workdir.settings()
        settings = replace(settings, pseudolabel=replace(settings.pseudolabel, confidence=0.5, quorum=0.5))
        workdir.config.write_text(render_toml(settings), encoding="utf-8")
    return workdir


@pytest.mark.parametrize("case", ["empty pool", "pool all automatic"])
def test_an_empty_shortlist_buys_nothing_and_the_run_goes_on(tmp_path: Path, case: str) -> None:
    workdir = _nothing_for_the_crowd(tmp_path / "work", case)
    summaries = _run(workdir, until="propagate")
    assert summaries["select"]["shortlist"] == 0
    crowd = summaries["crowd"]
    assert (crowd["state"], crowd["tasks"], crowd["pages"], crowd["answers"], crowd["cost"]) == (
        "skipped",
        0,
        0,
        0,
        0.0,
    )
    assert not (workdir.crowd / "campaign.json").exists()  # nothing launched: no training, no exam
    assert not (workdir.crowd / "simulated").exists()
    assert pl.read_parquet(workdir.table("answers")).height == 0
    assert summaries["aggregate"]["tasks"] == 0
    assert pl.read_parquet(workdir.table("aggregated")).height == 0
    assert pl.read_parquet(workdir.table("workers")).height == 0
    final = pl.read_parquet(workdir.table("final_labels"))
    images = pl.read_parquet(workdir.table("images")).filter(pl.col("split") != "test")
    assert final["id"].to_list() == images["id"].sort().to_list()  # every image labeled
    assert set(final["origin"].unique().to_list()) == ({"gt"} if case == "empty pool" else {"gt", "auto"})
    # And on every re-run: the crowd, aggregate and propagate stages redone give the same.
    again = _run(workdir, until="propagate", redo=("crowd",))
    assert again["crowd"]["state"] == "skipped" and again["aggregate"]["tasks"] == 0
    assert pl.read_parquet(workdir.table("final_labels")).equals(final)
    # What `iris run` does after the stages: the pictures and the report, over empty crowd tables.
    from iris.report.summary import draw_pictures, write_report

    state = RunState(workdir)
    assert [p.name for p in draw_pictures(workdir, workdir.settings(), state)] == [
        "data_stats.png",
        "worker_skills.png",
    ]
    assert write_report(workdir, state, {}).exists()
