"""The simulated crowd through the campaign: QC bans, honeypots, idempotent launch, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from iris import tables
from iris.config import Settings
from iris.crowd import campaign
from iris.crowd.backends import simulated
from iris.crowd.backends.simulated import PurchaseLog, make_population, read_answer_key
from iris.errors import CrowdError, InputError
from iris.workdir import Workdir, init_workdir

N_GT = 70
N_TASKS = 150


def make_workdir(
    root: Path, *, n_tasks: int = N_TASKS, seed: int = 0
) -> tuple[Workdir, Settings, dict[int, int]]:
    """A work directory with images, a shortlist and an answer key, and small-campaign settings."""
    wd = init_workdir(root)
    rng = np.random.default_rng(seed)
    ids = list(range(1, N_GT + n_tasks + 1))
    labels = rng.integers(0, 2, len(ids)).tolist()
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"https://img.example/{i}.png" for i in ids],
            "path": [f"images/{i}.png" for i in ids],
            "split": ["gt"] * N_GT + ["pool"] * n_tasks,
            "label": labels[:N_GT] + [None] * n_tasks,
            "width": 8,
            "height": 8,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]
    tables.write(images, wd.table("images"))
    shortlist = pl.DataFrame(
        {
            "id": ids[N_GT:],
            "reason": "problematic",
            "problematic_neighbours": 0,
            "priority": list(range(n_tasks)),
        }
    ).cast(tables.SHORTLIST)  # type: ignore[arg-type]
    tables.write(shortlist, wd.table("shortlist"))
    key = root / "answer_key.csv"
    pl.DataFrame(
        {
            "downloadUrl": [f"https://img.example/{i}.png" for i in ids[N_GT:]],
            "split": "pool",
            "is_conifer": ["TRUE" if v else "FALSE" for v in labels[N_GT:]],
        }
    ).write_csv(key)
    base = wd.settings()
    settings = replace(
        base,
        crowd=replace(
            base.crowd,
            answer_key=str(key),
            workers=24,
            page_size=10,
            min_seconds_per_page=5.0,
            honeypot_window=4,
            majority_window=15,
            exam_price=0.0,
        ),
    )
    truth = dict(zip(ids[N_GT:], labels[N_GT:], strict=True))
    return wd, settings, truth


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workdir, Settings, dict[int, int]]:
    wd, settings, truth = make_workdir(tmp_path_factory.mktemp("crowd") / "work")
    campaign.launch(wd, settings)
    campaign.collect(wd, settings)
    return wd, settings, truth


def kinds(settings: Settings) -> dict[str, str]:
    c = settings.crowd
    out = {}
    for cohort in range(simulated.MAX_COHORTS):
        for w in make_population(
            c.workers,
            spammers=c.spammers,
            fast_clickers=c.fast_clickers,
            pages_per_worker=c.pages_per_worker,
            seed=c.seed,
            cohort=cohort,
        ):
            out[w.id] = w.kind
    return out


def test_campaign_completes_every_task(finished: Any) -> None:
    wd, settings, _ = finished
    answers = tables.read(wd.table("answers"), tables.ANSWERS)
    real = answers.filter(~pl.col("is_honeypot"))
    per_task = real.group_by("task").len()
    assert per_task.height == N_TASKS
    assert per_task["len"].min() >= settings.crowd.overlap
    st = campaign.status(wd, settings)
    assert st.state == "complete" and st.tasks_done == N_TASKS
    assert not answers.filter(pl.struct("task", "worker").is_duplicated()).height  # nobody answers twice


def test_every_page_has_one_honeypot_never_repeated(finished: Any) -> None:
    wd, settings, _ = finished
    answers = tables.read(wd.table("answers"), tables.ANSWERS)
    per_page = answers.group_by("page").agg(
        hp=pl.col("is_honeypot").sum(), distinct=pl.col("task").filter(pl.col("is_honeypot")).n_unique()
    )
    assert (per_page["hp"] == settings.crowd.honeypots_per_page).all()
    assert (per_page["distinct"] == per_page["hp"]).all()
    gold = campaign.read_gold(wd)
    # No worker saw a honeypot twice while there were unseen ones.
    hp = (
        answers.filter(pl.col("is_honeypot"))
        .group_by("worker")
        .agg(n=pl.len(), distinct=pl.col("task").n_unique())
    )
    for n, distinct in zip(hp["n"], hp["distinct"], strict=True):
        assert distinct == min(n, gold.height)


def test_quality_control_bans_the_fast_and_the_spammers(finished: Any) -> None:
    wd, settings, _ = finished
    bans = campaign.read_bans(wd)
    banned = set(bans["worker"])
    kind = kinds(settings)
    workers = set(tables.read(wd.table("answers"), tables.ANSWERS)["worker"])
    fast = {w for w in workers if kind[w] == "fast"}
    assert fast and fast <= set(bans.filter(pl.col("rule") == "fast")["worker"])
    bad = {w for w in workers if kind[w] != "good"}
    good = workers - bad
    # Honest people are sometimes caught too (hard honeypots), but far less often.
    assert len(bad & banned) / len(bad) >= 0.75
    assert len(bad & banned) / len(bad) > 2 * len(good & banned) / len(good)


def test_banned_workers_tasks_are_reissued(finished: Any) -> None:
    wd, settings, _ = finished
    answers = tables.read(wd.table("answers"), tables.ANSWERS).filter(~pl.col("is_honeypot"))
    banned = set(campaign.read_bans(wd)["worker"])
    by_good = answers.filter(~pl.col("worker").is_in(list(banned))).group_by("task").len()
    # Every task still got its full overlap from workers who were not banned.
    assert by_good.height == N_TASKS
    assert by_good["len"].min() >= settings.crowd.overlap


def test_launch_again_buys_nothing(finished: Any) -> None:
    wd, settings, _ = finished
    log = wd.crowd / "simulated" / "pages.jsonl"
    before = log.read_text()
    answers = tables.read(wd.table("answers"), tables.ANSWERS)
    campaign.launch(wd, settings)
    campaign.collect(wd, settings)
    assert log.read_text() == before
    assert tables.read(wd.table("answers"), tables.ANSWERS).equals(answers)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def test_resume_after_a_kill_buys_no_page_twice(
    finished: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_wd, _, _ = finished
    wd, settings, _ = make_workdir(tmp_path / "work")
    real_append = PurchaseLog.append
    calls = {"n": 0}

    def dying_append(self: PurchaseLog, record: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 25:
            # Half a line reaches the file, as when the process dies mid-write.
            with self.path.open("a") as fh:
                fh.write('{"key": "torn')
            raise Killed
        real_append(self, record)

    monkeypatch.setattr(PurchaseLog, "append", dying_append)
    with pytest.raises(Killed):
        campaign.launch(wd, settings)
    monkeypatch.setattr(PurchaseLog, "append", real_append)
    assert campaign.status(wd, settings).state == "running"

    campaign.launch(wd, settings)
    campaign.collect(wd, settings)
    log = PurchaseLog(wd.crowd / "simulated" / "pages.jsonl")
    lines = [
        line for line in log.path.read_text().splitlines() if line.startswith('{"key"') and "torn" not in line
    ]
    assert len(lines) == len(log.records)  # every purchase is in the log exactly once
    resumed = tables.read(wd.table("answers"), tables.ANSWERS)
    reference = tables.read(reference_wd.table("answers"), tables.ANSWERS)
    assert resumed.equals(reference)  # the same campaign as one never interrupted
    assert campaign.status(wd, settings).cost == campaign.status(reference_wd, settings).cost


def test_other_settings_refuse_to_resume_until_restart(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=40)
    campaign.launch(wd, settings)
    changed = replace(settings, crowd=replace(settings.crowd, overlap=2))
    with pytest.raises(CrowdError, match="other settings"):
        campaign.launch(wd, changed)
    st = campaign.launch(wd, changed, restart=True)
    assert st.state == "complete"
    answers = campaign.collect(wd, changed).answers.filter(~pl.col("is_honeypot"))
    assert answers.group_by("task").len()["len"].min() >= 2


def test_plan_changes_nothing(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=40)
    plan = campaign.plan(wd, settings)
    assert settings.crowd.overlap == 5
    assert (plan.tasks, plan.pages, plan.answers) == (40, 23, 200)  # ceil(200 / 9)
    assert plan.honeypots == N_GT - 50
    assert not any(wd.crowd.iterdir())


def test_reject_banned_drops_their_answers(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=60)
    settings = replace(settings, crowd=replace(settings.crowd, reject_banned=True))
    campaign.launch(wd, settings)
    collected = campaign.collect(wd, settings)
    assert collected.bans.height > 0
    assert not set(collected.bans["worker"]) & set(collected.answers["worker"])


def test_collect_before_launch_is_an_error(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=10)
    with pytest.raises(CrowdError, match="run `iris crowd launch` first"):
        campaign.collect(wd, settings)


def test_answer_key_problems_are_clear(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=10)
    no_key = replace(settings, crowd=replace(settings.crowd, answer_key=""))
    with pytest.raises(CrowdError, match=r"crowd\.answer_key is not set"):
        campaign.launch(wd, no_key)
    bad = tmp_path / "bad.csv"
    bad.write_text("downloadUrl,is_conifer\nhttps://img.example/71.png,maybe\n")
    with pytest.raises(InputError, match=r"bad.csv:2: label 'maybe'"):
        read_answer_key(bad, task=settings.task)
    short = tmp_path / "short.csv"
    short.write_text("downloadUrl,is_conifer\nhttps://img.example/71.png,TRUE\n")
    partial = replace(settings, crowd=replace(settings.crowd, answer_key=str(short)))
    with pytest.raises(CrowdError, match="9 of 10 tasks have no row"):
        campaign.launch(wd, partial)


def test_answer_key_relative_paths_match_resolved_sources(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    key = tmp_path / "data" / "answer_key.csv"
    key.write_text("downloadUrl,split,is_shirt\nimages/a.png,pool,TRUE\nimages/b.png,pool,FALSE\n")
    settings = Settings()
    frame = read_answer_key(key, task=settings.task)
    tasks = pl.DataFrame(
        {"id": [1, 2], "source": [str(tmp_path / "data" / "images" / "a.png"), "images/b.png"]}
    )
    assert simulated.match_truth(tasks, frame, where="key") == {1: 1, 2: 0}


def test_sigkill_mid_campaign_then_resume(finished: Any, tmp_path: Path) -> None:
    """A real SIGKILL of a process in the middle of buying pages; the re-run completes the
    campaign exactly as an uninterrupted one, with no page bought twice."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from iris.config import render_toml

    reference_wd, _, _ = finished
    wd, settings, _ = make_workdir(tmp_path / "work")
    wd.config.write_text(render_toml(settings))
    code = (
        "from pathlib import Path\n"
        "from iris.crowd import campaign\n"
        "from iris.workdir import Workdir\n"
        f"wd = Workdir(Path({str(wd.root)!r}))\n"
        "campaign.launch(wd, wd.settings())\n"
    )
    log = wd.crowd / "simulated" / "pages.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "IRIS_PROGRESS": "0"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 8:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was killed mid-campaign, not finished
    assert campaign.status(wd, settings).state == "running"
    bought_before = log.read_text().count('"price"')
    campaign.launch(wd, wd.settings())
    campaign.collect(wd, wd.settings())
    keys = [line.split('"', 4)[3] for line in log.read_text().splitlines() if line.startswith('{"key"')]
    assert len(keys) == len(set(keys))
    assert bought_before <= len(keys)
    resumed = tables.read(wd.table("answers"), tables.ANSWERS)
    assert resumed.equals(tables.read(reference_wd.table("answers"), tables.ANSWERS))


def _shortlist(wd: Workdir, ids: list[int]) -> None:
    frame = pl.DataFrame(
        {"id": ids, "reason": "problematic", "problematic_neighbours": 0, "priority": list(range(len(ids)))}
    ).cast(tables.SHORTLIST)  # type: ignore[arg-type]
    tables.write(frame, wd.table("shortlist"))


def test_a_changed_shortlist_buys_only_the_new_images_in_a_new_round(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=60)
    first = list(range(N_GT + 1, N_GT + 41))  # 40 of the 60 pool images
    _shortlist(wd, first)
    campaign.launch(wd, settings)
    before = campaign.collect(wd, settings).answers
    log0 = (wd.crowd / "simulated" / "pages.jsonl").read_text()

    second = list(range(N_GT + 21, N_GT + 61))  # 20 kept, 20 dropped, 20 new
    _shortlist(wd, second)
    st = campaign.launch(wd, settings)
    assert st.state == "complete"
    assert st.tasks_total == 60
    assert (wd.crowd / "simulated" / "pages.jsonl").read_text() == log0  # round 0 untouched
    assert set(tables.read(wd.crowd / "rounds" / "1" / "tasks.parquet", tables.TASKS)["id"]) == set(
        range(N_GT + 41, N_GT + 61)
    )
    after = campaign.collect(wd, settings).answers
    real = after.filter(~pl.col("is_honeypot"))
    # Every image of both shortlists has answers, the dropped ones too; round 0's are unchanged.
    assert set(real["task"]) == set(first) | set(second)
    assert after.filter(~pl.col("page").str.starts_with("r1/")).equals(before)
    # No image is bought in two rounds.
    round1 = real.filter(pl.col("page").str.starts_with("r1/"))
    assert set(round1["task"]) == set(range(N_GT + 41, N_GT + 61))
    assert not set(round1["task"]) & set(first)
    assert after.filter(pl.struct("task", "worker", "page").is_duplicated()).height == 0

    # The same shortlist again: nothing new is bought.
    logs = sorted((wd.crowd).rglob("pages.jsonl"))
    texts = [p.read_text() for p in logs]
    campaign.launch(wd, settings)
    assert campaign.collect(wd, settings).answers.equals(after)
    assert [p.read_text() for p in sorted((wd.crowd).rglob("pages.jsonl"))] == texts
    assert len(logs) == 2


def test_a_changed_crowd_setting_still_refuses_after_rounds(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=40)
    _shortlist(wd, list(range(N_GT + 1, N_GT + 21)))
    campaign.launch(wd, settings)
    _shortlist(wd, list(range(N_GT + 1, N_GT + 41)))
    changed = replace(settings, crowd=replace(settings.crowd, overlap=2))
    with pytest.raises(CrowdError, match="other settings"):
        campaign.launch(wd, changed)
    assert not (wd.crowd / "rounds").exists()  # nothing was bought for the refused launch
    campaign.launch(wd, changed, restart=True)
    assert not (wd.crowd / "rounds").exists()
    assert campaign.status(wd, changed).tasks_total == 40


def test_the_web_labeler_takes_a_new_round_into_its_one_queue(tmp_path: Path) -> None:
    wd, settings, _ = make_workdir(tmp_path / "work", n_tasks=40)
    web = replace(settings, crowd=replace(settings.crowd, backend="web"))
    _shortlist(wd, list(range(N_GT + 1, N_GT + 21)))
    assert campaign.launch(wd, web).tasks_total == 20
    _shortlist(wd, list(range(N_GT + 11, N_GT + 41)))
    st = campaign.launch(wd, web)
    assert (st.state, st.tasks_total) == ("running", 40)
    assert set(tables.read(wd.crowd / "rounds" / "1" / "tasks.parquet", tables.TASKS)["id"]) == set(
        range(N_GT + 21, N_GT + 41)
    )
    assert not (wd.crowd / "rounds" / "1" / "web").exists()  # one labeler database, served as before
    from iris.crowd.backends.web import LabelerDB

    db = LabelerDB(wd.crowd / "web" / "labeler.db")
    assert db.counts()["tasks"] == 40
    assert db.item_path(N_GT + 40) == f"images/{N_GT + 40}.png"
