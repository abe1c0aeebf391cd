"""QualityState (quality control kept up to date page by page) bans exactly as re-checking
every answer with :func:`iris.crowd.quality.evaluate` does, on random answer streams."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from iris import tables
from iris.config import Settings
from iris.crowd import quality
from iris.crowd.backends import simulated
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.spec import (
    SKILL_OFF,
    CampaignSpec,
    FastRule,
    HoneypotRule,
    MajorityRule,
    QualityRules,
    split_ground_truth,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
GOLD_IDS = [900, 901, 902, 903]
NOT_GOLD = 950
"""A honeypot id without a known answer: no rule may count it."""


@dataclass
class PageIn:
    worker: str
    tasks: list[int]
    labels: list[int]
    is_honeypot: list[bool]
    duration: float


@st.composite
def pages(draw: st.DrawFn, *, n_tasks: int, n_workers: int) -> PageIn:
    worker = draw(st.sampled_from([f"w{i}" for i in range(n_workers)]))
    real = draw(st.lists(st.integers(0, n_tasks - 1), min_size=0, max_size=6, unique=True))
    hps = draw(st.lists(st.sampled_from([*GOLD_IDS, NOT_GOLD]), max_size=2, unique=True))
    if not real and not hps:
        real = [draw(st.integers(0, n_tasks - 1))]
    tasks = real + hps
    # Honest-looking, random and one-sided workers all occur.
    labels = draw(st.lists(st.integers(0, 1), min_size=len(tasks), max_size=len(tasks)))
    duration = draw(st.sampled_from([0.5, 2.0, 4.9, 5.0, 8.0, 30.0]))
    return PageIn(worker, tasks, labels, [False] * len(real) + [True] * len(hps), duration)


rules_st = st.builds(
    QualityRules,
    fast=st.builds(
        FastRule,
        min_seconds=st.sampled_from([0.0, 5.0, 10.0]),
        ban_days=st.just(1),
        page_size=st.sampled_from([0, 4, 8]),
    ),
    honeypot=st.builds(
        HoneypotRule,
        min_accuracy=st.sampled_from([0.0, 0.5, 0.6, 0.8, 1.0]),
        window=st.integers(1, 4),
        ban_days=st.just(7),
    ),
    majority=st.builds(
        MajorityRule,
        min_agreement=st.sampled_from([0.0, 0.5, 0.6, 0.8, 1.0]),
        window=st.integers(1, 5),
        ban_days=st.just(3),
        min_others=st.integers(0, 3),
    ),
)
GOLD = pl.DataFrame({"task": GOLD_IDS, "label": [1, 0, 1, 0]}, schema={"task": pl.Int64, "label": pl.Int8})


def as_rows(page: PageIn, name: str, at: datetime) -> list[dict[str, object]]:
    return [
        {
            "task": t,
            "worker": page.worker,
            "label": label,
            "page": name,
            "submitted_at": at,
            "duration": page.duration,
            "is_honeypot": hp,
        }
        for t, label, hp in zip(page.tasks, page.labels, page.is_honeypot, strict=True)
    ]


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[PageIn, bool]]:
    """Pages in submission order, each with whether the rules are checked right after it."""
    n_tasks = draw(st.sampled_from([3, 10, 30]))
    n_workers = draw(st.integers(2, 8))
    page = pages(n_tasks=n_tasks, n_workers=n_workers)
    return draw(st.lists(st.tuples(page, st.booleans()), min_size=1, max_size=50))


@settings(max_examples=400, deadline=None)
@given(stream=streams(), rules=rules_st)
def test_incremental_bans_equal_a_full_recheck(
    stream: list[tuple[PageIn, bool]], rules: QualityRules
) -> None:
    """After every evaluation (each page, or a few pages at once) the incremental state bans
    the same workers, by the same rule, with the same evidence, as a full re-check with the
    bans so far as ``already_banned``."""
    state = quality.QualityState(GOLD, rules)
    rows: list[dict[str, object]] = []
    banned: set[str] = set()
    at = T0
    for n, (page, evaluate_now) in enumerate(stream):
        at += timedelta(seconds=1 + n % 3)
        name = f"{page.worker}-p{n:03d}"
        page_rows = as_rows(page, name, at)
        rows.extend(page_rows)
        state.add_answers(pl.DataFrame(page_rows, schema=tables.ANSWERS))
        if not evaluate_now and n < len(stream) - 1:
            continue
        expected = quality.evaluate(
            pl.DataFrame(rows, schema=tables.ANSWERS), GOLD, rules, now=at, already_banned=banned
        )
        got = state.evaluate(now=at)
        assert got.equals(expected), (got.to_dicts(), expected.to_dicts())
        banned |= set(expected["worker"].to_list())
        assert state.banned == banned


def test_a_ban_stops_counting_towards_others_majority() -> None:
    """w2 disagrees with two spammers who are banned first; once their answers stop
    counting, w2's tasks have no majority left and w2 is not banned."""
    rules = QualityRules(
        fast=FastRule(min_seconds=0, ban_days=1),
        honeypot=HoneypotRule(min_accuracy=0.9, window=1, ban_days=7),
        majority=MajorityRule(min_agreement=0.6, window=2, ban_days=7, min_others=2),
    )
    state = quality.QualityState(GOLD, rules)
    for worker, label, gold_answer in (("s0", 1, 0), ("s1", 1, 0)):
        state.add_page(
            worker=worker,
            page=f"{worker}-p0",
            tasks=[1, 2, 900],
            labels=[label, label, gold_answer],
            is_honeypot=[False, False, True],
            submitted_at=T0,
            duration=10.0,
        )
    assert set(state.evaluate(now=T0)["worker"]) == {"s0", "s1"}  # honeypot 900 answered wrong
    later = T0 + timedelta(minutes=1)
    state.add_page(
        worker="w2",
        page="w2-p0",
        tasks=[1, 2, 900],
        labels=[0, 0, 1],
        is_honeypot=[False, False, True],
        submitted_at=later,
        duration=10.0,
    )
    assert state.evaluate(now=later).height == 0


def test_a_ban_can_tip_an_earlier_tie_against_someone() -> None:
    """Y and X answered task 1 against Z: a tie among Y's others, so it did not count. Once X
    is banned (a wrong honeypot), Y's task 1 has a majority against Y; the next evaluation
    bans Y although the page that triggers it does not touch Y or task 1."""
    rules = QualityRules(
        fast=FastRule(min_seconds=0, ban_days=1),
        honeypot=HoneypotRule(min_accuracy=0.9, window=1, ban_days=7),
        majority=MajorityRule(min_agreement=0.6, window=1, ban_days=7, min_others=1),
    )
    stream = [
        ("p", [2], [1], [False]),
        ("x", [1], [0], [False]),
        ("y", [1], [0], [False]),
        ("z", [1, 2], [1, 1], [False, False]),  # z's last decided task is 2, where it agrees
        ("x", [900], [0], [True]),  # gold says 1: x is banned
        ("p", [3], [1], [False]),
    ]
    state = quality.QualityState(GOLD, rules)
    rows: list[dict[str, object]] = []
    banned: set[str] = set()
    found: list[list[str]] = []
    for n, (worker, tasks, labels, hp) in enumerate(stream):
        at = T0 + timedelta(minutes=n)
        page = PageIn(worker, tasks, labels, hp, 10.0)
        rows.extend(as_rows(page, f"{worker}-{n}", at))
        state.add_answers(pl.DataFrame(as_rows(page, f"{worker}-{n}", at), schema=tables.ANSWERS))
        expected = quality.evaluate(
            pl.DataFrame(rows, schema=tables.ANSWERS), GOLD, rules, now=at, already_banned=banned
        )
        got = state.evaluate(now=at)
        assert got.equals(expected)
        banned |= set(got["worker"].to_list())
        found.append(got["worker"].to_list())
    assert found == [[], [], [], [], ["x"], ["y"]]


def test_the_simulated_campaign_is_the_same_with_a_full_recheck_per_page(tmp_path: Path) -> None:
    """The whole simulation, once with QualityState and once re-checking every answer after
    every page (the old way): the same answers, bans, pages and cost."""

    class FullRecheck(simulated.Simulation):
        def check_quality(self, now: datetime) -> None:
            answers = pl.DataFrame(self._answers, schema=tables.ANSWERS)
            already = {w for w, s in self.states.items() if s.banned}
            new = quality.evaluate(answers, self.gold, self.spec.rules, now=now, already_banned=already)
            for ban in new.iter_rows(named=True):
                self.ban(ban)
            if new.height:
                self._bans.append(new)

    rng = np.random.default_rng(4)
    n_gt, n_tasks = 120, 300
    ids = np.arange(1, n_gt + n_tasks + 1)
    labels = rng.integers(0, 2, len(ids))
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"https://img.example/{i}.png" for i in ids],
            "path": [f"images/{i}.png" for i in ids],
            "split": ["gt"] * n_gt + ["pool"] * n_tasks,
            "label": [int(v) for v in labels[:n_gt]] + [None] * n_tasks,
        },
        schema={"id": pl.Int64, "source": pl.String, "path": pl.String, "split": pl.String, "label": pl.Int8},
    )
    # The window rules, all on (the skill rule's batch estimate is a different sweep order,
    # tests/unit/test_crowd_quality_skill.py covers it).
    spec = CampaignSpec.from_settings(Settings())
    rules = spec.rules
    spec = replace(
        spec,
        rules=replace(
            rules,
            fast=replace(rules.fast, min_seconds=20.0),
            honeypot=replace(rules.honeypot, min_accuracy=0.6, window=5),
            majority=replace(rules.majority, min_agreement=0.6),
            skill=SKILL_OFF,
        ),
    )
    tasks = images.filter(pl.col("split") == "pool").select("id", "source", "path").with_row_index("priority")
    inputs = CampaignInputs(
        spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=tmp_path
    )
    truth = {int(i): int(v) for i, v in zip(ids, labels, strict=True)}
    population: dict[str, float | int] = {
        "workers": 30,
        "spammers": 0.3,
        "fast_clickers": 0.1,
        "pages_per_worker": 6,
        "seed": 4,
    }
    difficulty = simulated.load_difficulty(inputs, ids.tolist(), seed=4)
    incremental = simulated.Simulation(
        inputs, truth=truth, difficulty=difficulty, population=population
    ).run()
    batch = FullRecheck(inputs, truth=truth, difficulty=difficulty, population=population).run()
    assert incremental.bans.height > 0
    assert incremental.answers.equals(batch.answers)
    assert incremental.bans.equals(batch.bans)
    assert (incremental.pages, incremental.cost) == (batch.pages, batch.cost)
