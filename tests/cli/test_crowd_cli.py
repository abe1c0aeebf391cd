"""``iris crowd plan | launch | status | collect | report`` and ``iris aggregate`` through CliRunner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from iris import tables
from iris.cli import main
from iris.config import render_toml
from iris.workdir import Workdir, init_workdir


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    """70 ground-truth images, 60 shortlisted pool images, an answer key; a small campaign."""
    wd = init_workdir(tmp_path / "work")
    rng = np.random.default_rng(0)
    ids = list(range(1, 131))
    labels = rng.integers(0, 2, len(ids)).tolist()
    tables.write(
        pl.DataFrame(
            {
                "id": ids,
                "source": [f"https://img.example/{i}.png" for i in ids],
                "path": [f"images/{i}.png" for i in ids],
                "split": ["gt"] * 70 + ["pool"] * 60,
                "label": labels[:70] + [None] * 60,
                "width": 8,
                "height": 8,
                "sha256": "",
            }
        ).cast(tables.IMAGES),  # type: ignore[arg-type]
        wd.table("images"),
    )
    tables.write(
        pl.DataFrame(
            {
                "id": ids[70:],
                "reason": "problematic",
                "problematic_neighbours": 1,
                "priority": list(range(60)),
            }
        ).cast(tables.SHORTLIST),  # type: ignore[arg-type]
        wd.table("shortlist"),
    )
    pl.DataFrame(
        {"downloadUrl": [f"https://img.example/{i}.png" for i in ids[70:]], "is_conifer": labels[70:]}
    ).write_csv(tmp_path / "answer_key.csv")
    s = wd.settings()
    s = replace(s, crowd=replace(s.crowd, workers=24, page_size=10, min_seconds_per_page=5.0))
    wd.config.write_text(render_toml(s))
    return wd


def run(wd: Workdir, *args: str) -> str:
    result = CliRunner().invoke(main, ["--workdir", str(wd.root), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_launch_status_collect_aggregate_report(work: Workdir, tmp_path: Path) -> None:
    key = str(tmp_path / "answer_key.csv")
    plan = json.loads(run(work, "crowd", "plan", "--answer-key", key, "--json"))
    assert (plan["tasks"], plan["pages"], plan["honeypots"]) == (60, 34, 20)  # ceil(60 · 5 / 9)
    assert "pages" in run(work, "crowd", "plan", "--answer-key", key)

    launched = run(work, "crowd", "launch", "--answer-key", key)
    assert "complete" in launched
    status = json.loads(run(work, "crowd", "status", "--json"))
    assert status["state"] == "complete" and status["tasks_done"] == 60 and status["cost"] > 0

    run(work, "crowd", "collect")
    answers = tables.read(work.table("answers"), tables.ANSWERS)
    assert answers.filter(~pl.col("is_honeypot"))["task"].n_unique() == 60

    out = json.loads(run(work, "aggregate", "--method", "majority-vote", "--json"))
    assert out["method"] == "majority-vote" and out["tasks"] == 60
    assert tables.read(work.table("aggregated"), tables.AGGREGATED).height == 60
    assert tables.read(work.table("workers"), tables.WORKERS).height == answers["worker"].n_unique()

    report = run(work, "crowd", "report")
    for words in ("cost", "answers", "banned", "agreement with majority", "worker_skills.png"):
        assert words in report
    png = work.reports / "worker_skills.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_collect_before_launch_is_a_one_line_error(work: Workdir) -> None:
    result = CliRunner().invoke(main, ["--workdir", str(work.root), "crowd", "collect"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "iris: error: no campaign" in result.output


def test_aggregate_before_collect_names_the_command(work: Workdir) -> None:
    result = CliRunner().invoke(main, ["--workdir", str(work.root), "aggregate"])
    assert result.exit_code == 2
    assert "iris crowd collect" in result.output


def test_unknown_method_is_refused_by_the_cli(work: Workdir) -> None:
    result = CliRunner().invoke(main, ["--workdir", str(work.root), "aggregate", "--method", "nope"])
    assert result.exit_code == 2
    assert "majority-vote" in result.output
