"""The crowd rounds of ``iris run`` (:mod:`iris.rounds.loop`) on a small synthetic pool with
a simulated crowd: what each round records, that nothing is bought twice, and that a run
killed between a round's draw and its record resumes in that round and ends the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_stage_reruns import _run, _tables, synthetic_workdir

from iris import tables
from iris.workdir import Workdir

ROUND_TABLES = ("round_tasks", "rounds", "round_labels", "answers", "aggregated", "final_labels")


def _campaign_tasks(workdir: Workdir) -> list[int]:
    """Every task id the campaign launched, over all its rounds (a repeat = bought twice)."""
    n = len(json.loads((workdir.crowd / "campaign.json").read_text())["rounds"])
    paths = [workdir.crowd / "tasks.parquet"] + [
        workdir.crowd / "rounds" / str(i) / "tasks.parquet" for i in range(1, n)
    ]
    return [i for path in paths for i in pl.read_parquet(path)["id"].to_list()]


@pytest.fixture(scope="module")
def rounds_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]]:
    workdir = synthetic_workdir(tmp_path_factory.mktemp("rounds") / "work")
    summaries = _run(workdir, until="propagate")
    return workdir, summaries, _tables(workdir, ROUND_TABLES)


def test_every_round_is_recorded_and_nothing_is_bought_twice(
    rounds_run: tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]],
) -> None:
    workdir, summaries, got = rounds_run
    drawn, rounds = got["round_tasks"], got["rounds"]
    crowd = summaries["crowd"]
    assert crowd["rounds"] == rounds.height >= 2
    assert rounds["round"].to_list() == list(range(rounds.height))
    assert rounds["stop"].to_list() == [False] * (rounds.height - 1) + [True]
    assert crowd["stop_reason"] == rounds["reason"][-1] != ""
    # One draw per image, launched once: the campaign's rounds hold exactly the drawn images.
    assert drawn["id"].is_unique().all()
    launched = _campaign_tasks(workdir)
    assert len(launched) == len(set(launched)) == drawn.height == crowd["tasks"]
    assert set(launched) == set(drawn["id"].to_list())
    # Every round audits a uniform sample of what it left automatic, and buys within the budget.
    settings = workdir.settings()
    n_pool = summaries["pseudolabel"]["pool"]
    assert (rounds["audited"] == round(settings.rounds.audit_share * n_pool)).all()
    assert (
        rounds["bought"].to_list() == drawn.group_by("round").len().sort("round")["len"].cum_sum().to_list()
    )
    assert rounds["bought"][-1] <= round(settings.rounds.budget * n_pool)
    assert crowd["share"] == pytest.approx(rounds["bought"][-1] / n_pool)
    # The audit is scored on answers the crowd gave: its n never exceeds what was audited.
    assert (rounds["audit_n"] <= rounds["audited"]).all() and (rounds["audit_n"] > 0).all()
    # Every pool image the crowd did not label keeps the rounds' last automatic label.
    aggregated = set(got["aggregated"]["task"].to_list())
    pool = set(pl.read_parquet(workdir.table("images")).filter(pl.col("split") == "pool")["id"].to_list())
    assert set(got["round_labels"]["id"].to_list()) == pool - aggregated
    final = got["final_labels"]
    assert set(final.filter(pl.col("origin") == "auto")["id"].to_list()) == pool - aggregated
    assert summaries["propagate"]["propagated"] == 0


def test_a_round_cut_off_resumes_in_that_round_and_buys_nothing_again(
    tmp_path: Path, rounds_run: tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]]
) -> None:
    _, fresh, fresh_tables = rounds_run
    workdir = synthetic_workdir(tmp_path / "work")
    _run(workdir, until="propagate")
    spent = json.loads((workdir.crowd / "campaign.json").read_text())["tasks"]
    # What a SIGKILL after the last round was drawn and bought, before it was recorded, leaves.
    rounds = tables.read(workdir.table("rounds"), tables.ROUNDS)
    tables.write(rounds.head(rounds.height - 1), workdir.table("rounds"))
    again = _run(workdir, until="propagate", redo=("crowd",))
    assert again["crowd"]["rounds"] == fresh["crowd"]["rounds"]
    # The campaign already held the last round's images: resuming bought no task again.
    assert json.loads((workdir.crowd / "campaign.json").read_text())["tasks"] == spent
    assert again["crowd"]["answers"] == fresh["crowd"]["answers"]
    launched = _campaign_tasks(workdir)
    assert len(launched) == len(set(launched))
    got = _tables(workdir, ROUND_TABLES)
    for name in ROUND_TABLES:
        assert got[name].equals(fresh_tables[name]), name


def test_rounds_recorded_past_their_draws_are_refused(tmp_path: Path) -> None:
    from iris.errors import StageOrderError
    from iris.pipeline import run_pipeline

    workdir = synthetic_workdir(tmp_path / "work")
    _run(workdir, until="propagate")
    drawn = tables.read(workdir.table("round_tasks"), tables.ROUND_TASKS)
    tables.write(drawn.filter(pl.col("round") == 0), workdir.table("round_tasks"))
    with pytest.raises(StageOrderError, match="records round"):
        run_pipeline(workdir, workdir.settings(), until="crowd", redo=("crowd",), echo=lambda _: None)


def test_the_report_shows_every_round_and_draws_the_curve(
    rounds_run: tuple[Workdir, dict[str, Any], dict[str, pl.DataFrame]],
) -> None:
    from iris.pipeline import RunState
    from iris.report.rounds import CURVE_FILE
    from iris.report.summary import draw_pictures, write_report

    workdir, _, got = rounds_run
    state = RunState(workdir)
    drawn = draw_pictures(workdir, workdir.settings(), state)
    assert workdir.reports / CURVE_FILE in drawn and (workdir.reports / CURVE_FILE).stat().st_size > 10_000
    text = write_report(workdir, state, {}).read_text()
    section = text.split("## Crowd rounds", 1)[1].split("##", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| round")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {i + 1}" for i in range(got["rounds"].height)]
    assert rows[-1].rstrip(" |").endswith(("target", "budget", "done", "person"))
    assert f"![rounds]({CURVE_FILE})" in text


def test_raising_max_rounds_goes_on_from_the_last_round_and_rebuys_nothing(tmp_path: Path) -> None:
    from dataclasses import replace

    from iris.config import render_toml

    workdir = synthetic_workdir(tmp_path / "work")
    settings = workdir.settings()
    workdir.config.write_text(render_toml(replace(settings, rounds=replace(settings.rounds, max_rounds=2))))
    first = _run(workdir, until="crowd")["crowd"]
    assert first["rounds"] == 2 and first["stop_reason"] == "rounds"
    before = tables.read(workdir.table("round_tasks"), tables.ROUND_TASKS)
    workdir.config.write_text(render_toml(replace(settings, rounds=replace(settings.rounds, max_rounds=3))))
    again = _run(workdir, until="crowd")["crowd"]  # [rounds] changed: the crowd stage runs again
    assert again["rounds"] == 3
    after = tables.read(workdir.table("round_tasks"), tables.ROUND_TASKS)
    assert after.head(before.height).equals(before)  # the first two rounds as they were
    assert set(after.filter(pl.col("round") == 2)["id"].to_list()).isdisjoint(before["id"].to_list())
    launched = _campaign_tasks(workdir)
    assert len(launched) == len(set(launched)) == after.height
