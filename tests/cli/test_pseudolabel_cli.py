from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.pseudolabel.synthetic import clustered_pool
from iris.store import open_store
from iris.workdir import Workdir


@pytest.fixture
def loaded(workdir: Workdir) -> Workdir:
    store = open_store(workdir, workdir.settings())
    clustered_pool(400, dim=16, n_labeled=40, n_test=40, blobs_per_class=3, spread=1.2, seed=5).load_into(
        store
    )
    store.close()
    return workdir


def run(workdir: Workdir, *args: str) -> object:
    return CliRunner().invoke(main, ["--workdir", str(workdir.root), *args])


def test_pseudolabel_prints_counts_and_the_estimate(loaded: Workdir) -> None:
    result = run(loaded, "pseudolabel", "--map-points", "0", "--folds", "3")
    assert result.exit_code == 0, result.output
    for what in ("auto-labeled", "problematic", "added as neighbours", "shortlist", "of pool"):
        assert what in result.output
    assert (
        "estimated accuracy of automatic labels (leave-one-out kNN + k-fold KMeans on 40 labeled)"
        in result.output
    )
    assert "in Qdrant" in result.output
    assert loaded.table("pseudolabels").exists() and loaded.table("shortlist").exists()


def test_select_alone_with_a_budget_as_json(loaded: Workdir) -> None:
    assert run(loaded, "pseudolabel", "--no-select", "--folds", "0").exit_code == 0
    assert not loaded.table("shortlist").exists()
    result = run(loaded, "select", "--budget", "7", "-k", "3", "--map-points", "0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["select"]
    assert data["shortlist"] == 7 and data["k"] == 3 and data["budget"] == 7
    assert pl.read_parquet(loaded.table("shortlist")).height == 7


def test_options_come_from_iris_toml_too(loaded: Workdir) -> None:
    text = loaded.config.read_text()
    text = text.replace('members = ["k3-uniform"', 'members = ["k2-uniform-euclid", "k3-uniform"', 1)
    loaded.config.write_text(
        text.replace("budget = 0  #", "budget = 4  #").replace("map_points = 2000", "map_points = 0")
    )
    result = run(loaded, "pseudolabel", "--folds", "0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["pseudolabel"]["members"][0] == "k2-uniform-euclid"
    assert data["select"]["shortlist"] == 4


def test_a_bad_member_is_one_line(loaded: Workdir) -> None:
    result = run(loaded, "pseudolabel", "--member", "k5-gaussian")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "k5-gaussian" in result.output and "expected k<K>-" in result.output


def test_select_before_pseudolabel_is_one_line(loaded: Workdir) -> None:
    result = run(loaded, "select")
    assert result.exit_code == 2
    assert "run `iris pseudolabel` first" in result.output


@pytest.fixture
def crowd_ready(workdir: Workdir) -> Workdir:
    """Ingest and embed done (images table, vectors), a simulated crowd with its answer key."""
    from dataclasses import replace

    from iris.config import render_toml

    store = open_store(workdir, workdir.settings())
    pool = clustered_pool(400, dim=16, n_labeled=60, n_test=40, blobs_per_class=3, spread=1.2, seed=5)
    key = pool.write_workdir(workdir, store)
    store.close()
    base = workdir.settings()
    settings = replace(
        base,
        select=replace(base.select, map_points=0),
        crowd=replace(base.crowd, backend="simulated", training=10, exam=10, answer_key=str(key)),
    )
    workdir.config.write_text(render_toml(settings), encoding="utf-8")
    return workdir


def test_a_new_shortlist_after_a_campaign_keeps_what_was_bought(crowd_ready: Workdir) -> None:
    assert run(crowd_ready, "pseudolabel", "--folds", "0").exit_code == 0
    assert run(crowd_ready, "select", "--budget", "40").exit_code == 0
    sent = pl.read_parquet(crowd_ready.table("shortlist"))
    assert sent.height == 40
    launched = run(crowd_ready, "crowd", "launch")
    assert launched.exit_code == 0, launched.output
    assert run(crowd_ready, "crowd", "collect").exit_code == 0
    bought = pl.read_parquet(crowd_ready.table("answers"))
    assert set(bought.filter(~pl.col("is_honeypot"))["task"].to_list()) == set(sent["id"].to_list())

    # A smaller budget replaces the shortlist (the first 7 of the same order) ...
    assert run(crowd_ready, "select", "--budget", "7").exit_code == 0
    smaller = pl.read_parquet(crowd_ready.table("shortlist"))
    assert smaller["id"].to_list() == sent["id"].to_list()[:7]
    # ... and the campaign neither forgets nor buys again: every answer bought is kept.
    assert run(crowd_ready, "crowd", "launch").exit_code == 0
    assert run(crowd_ready, "crowd", "collect").exit_code == 0
    again = pl.read_parquet(crowd_ready.table("answers"))
    assert again.sort(list(again.columns)).equals(bought.sort(list(bought.columns)))
