"""The skill rule (per-worker Dawid-Skene confusion matrix, iris.crowd.quality.SkillState) on
hand-made answers and on a small simulated campaign whose worker kinds are known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

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
    SkillRule,
    split_ground_truth,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RULE = SkillRule(min_skill=0.3, min_answers=20, confidence=2.0, ban_days=7)


def crowd_answers(n_tasks: int, seed: int) -> tuple[dict[int, int], dict[str, list[int]]]:
    """Truth and each worker's labels: three honest (80% right), one random, one always 1."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_tasks)
    labels: dict[str, list[int]] = {}
    for w in ("h1", "h2", "h3"):
        right = rng.random(n_tasks) < 0.8
        labels[w] = np.where(right, truth, 1 - truth).tolist()
    labels["random"] = rng.integers(0, 2, n_tasks).tolist()
    labels["ones"] = [1] * n_tasks
    return dict(enumerate(truth.tolist())), labels


def fed_state(n_tasks: int = 200, seed: int = 0, page: int = 20) -> quality.SkillState:
    _, labels = crowd_answers(n_tasks, seed)
    state = quality.SkillState({})
    for start in range(0, n_tasks, page):
        for worker, mine in labels.items():
            tasks = list(range(start, min(start + page, n_tasks)))
            state.add_page(worker, tasks, [mine[t] for t in tasks], [False] * len(tasks))
    return state


def test_honest_workers_have_skill_and_random_or_one_sided_ones_do_not() -> None:
    state = fed_state()
    skills = dict(zip(*state.table().select("worker", "skill"), strict=True))
    honest = [skills[w] for w in ("h1", "h2", "h3")]
    assert all(0.35 < s < 0.9 for s in honest), skills  # true skill 0.6, 200 answers each
    assert abs(skills["random"]) < 0.15, skills
    assert skills["ones"] == 0.0  # specificity 0, sensitivity 1: answers that ignore the image
    assert {w for w in skills if state.judge(w, RULE)} == {"random", "ones"}


def test_honeypots_are_scored_against_their_known_label() -> None:
    state = quality.SkillState({900: 1, 901: 0, 902: 1, 903: 0})
    state.add_page("w", [900, 901, 902, 903], [1, 0, 1, 0], [True] * 4)
    state.add_page("x", [900, 901, 902, 903], [1, 1, 1, 1], [True] * 4)
    conf = state.confusion("w")
    assert (conf.answers, conf.evidence, conf.skill()) == (4, 4.0, 1.0)
    assert state.confusion("x").skill() == 0.0


def test_nothing_is_judged_before_min_answers_or_with_the_rule_off() -> None:
    state = fed_state(n_tasks=200)
    assert (
        state.judge("random", SkillRule(min_skill=0.3, min_answers=201, confidence=2.0, ban_days=7)) is None
    )
    assert state.judge("random", SKILL_OFF) is None
    assert state.judge("random", RULE) is not None


def test_a_task_only_one_worker_answered_says_nothing_about_them() -> None:
    state = quality.SkillState({})
    state.add_page("w", [1, 2, 3], [1, 0, 1], [False] * 3)
    conf = state.confusion("w")
    assert (conf.answers, conf.evidence) == (0, 0.0)


def test_removing_a_worker_takes_their_votes_out_of_everyone_elses_estimate() -> None:
    state = fed_state()
    state.remove("random")
    state.remove("ones")
    assert "random" not in set(state.table()["worker"])
    state.refresh()
    alone = quality.SkillState({})
    _, labels = crowd_answers(200, 0)
    for start in range(0, 200, 20):
        for worker in ("h1", "h2", "h3"):
            tasks = list(range(start, start + 20))
            alone.add_page(worker, tasks, [labels[worker][t] for t in tasks], [False] * 20)
    alone.refresh()
    for w in ("h1", "h2", "h3"):
        a, b = state.confusion(w), alone.confusion(w)
        assert a.answers == b.answers == 200
        assert a.skill() == pytest.approx(b.skill(), abs=0.02)


def test_evaluate_bans_by_skill_after_the_other_rules() -> None:
    _, labels = crowd_answers(100, 1)
    rows = []
    for n, (worker, mine) in enumerate(labels.items()):
        at = T0 + timedelta(minutes=n)
        rows += [
            {
                "task": t,
                "worker": worker,
                "label": label,
                "page": f"{worker}-p0",
                "submitted_at": at,
                "duration": 1.0 if worker == "ones" else 100.0,
                "is_honeypot": False,
            }
            for t, label in enumerate(mine)
        ]
    answers = pl.DataFrame(rows, schema=tables.ANSWERS)
    rules = QualityRules(
        fast=FastRule(min_seconds=5.0, ban_days=1),
        honeypot=HoneypotRule(min_accuracy=0.0, window=5, ban_days=7),
        majority=MajorityRule(min_agreement=0.0, window=20, ban_days=7),
        skill=RULE,
    )
    gold = pl.DataFrame(schema={"task": pl.Int64, "label": pl.Int8})
    bans = quality.evaluate(answers, gold, rules, now=T0)
    assert dict(zip(*bans.select("worker", "rule"), strict=True)) == {"ones": "fast", "random": "skill"}
    assert bans.filter(pl.col("rule") == "skill")["until"].to_list() == [T0 + timedelta(days=7)]


SMALL_CROWD: dict[str, float | int] = {
    "workers": 30,
    "spammers": 0.2,
    "fast_clickers": 0.1,
    "pages_per_worker": 12,
    "seed": 3,
}
"""A cohort of 30 people a round: 20% spammers and 10% fast clickers drawn, the rest honest."""


def _inputs(tmp_path: Path, *, n_gt: int, n_tasks: int, seed: int) -> tuple[CampaignInputs, dict[int, int]]:
    rng = np.random.default_rng(seed)
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
    spec = CampaignSpec.from_settings(Settings())
    tasks = images.filter(pl.col("split") == "pool").select("id", "source", "path").with_row_index("priority")
    inputs = CampaignInputs(
        spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=tmp_path
    )
    return inputs, {int(i): int(v) for i, v in zip(ids, labels, strict=True)}


@pytest.mark.parametrize("rules", ["toloka", "iris"])
def test_default_rules_ban_the_spammers_and_keep_the_honest_on_hard_images(
    tmp_path: Path, rules: str
) -> None:
    """A small campaign on hard images (difficulty 0.6 each): under the default settings no
    honest person is banned, and every spammer and fast clicker who stays past 3 pages is."""
    inputs, truth = _inputs(tmp_path, n_gt=200, n_tasks=1500, seed=3)
    difficulty = {i: 0.6 for i in truth}
    population = SMALL_CROWD
    result = simulated.simulate(
        inputs,
        truth=truth,
        difficulty=difficulty,
        population=population,
        rules=rules,  # type: ignore[arg-type]
    )
    banned = set(result.bans["worker"])
    kinds = {w.id: w.kind for w in result.workers}
    by_kind = {
        k: (sum(v == k for v in kinds.values()), sum(kinds[w] == k for w in banned))
        for k in ("good", "spammer", "fast")
    }
    assert by_kind["good"][0] >= 10 and by_kind["good"][1] == 0
    assert by_kind["spammer"][1] >= 4 and by_kind["fast"][1] >= 1
    # Whoever is left over answered 3 pages at most and left before the evidence was sure.
    pages = result.answers.group_by("worker").agg(pl.col("page").n_unique())
    left = pages.filter(
        pl.col("worker").is_in([w for w, k in kinds.items() if k != "good" and w not in banned])
    )
    assert all(n <= 3 for n in left["page"].to_list())


def test_a_later_round_keeps_the_exams_and_the_bans_of_the_earlier_ones(tmp_path: Path) -> None:
    """Round 1 of a campaign (its own tasks, the same people): nobody examined in round 0 is
    paid for an exam again, and nobody banned in round 0 answers a page of round 1."""
    inputs, truth = _inputs(tmp_path, n_gt=200, n_tasks=1500, seed=3)
    first = inputs.tasks.head(900)
    later = inputs.tasks.slice(900)
    difficulty = {i: 0.6 for i in truth}
    population = SMALL_CROWD
    round0 = simulated.simulate(
        CampaignInputs(inputs.spec, first, inputs.ground_truth, tmp_path),
        truth=truth,
        difficulty=difficulty,
        population=population,
    )
    examined = set(round0.exams["worker"])
    banned = set(round0.bans["worker"])
    assert banned and examined > banned
    again = CampaignInputs(inputs.spec, later, inputs.ground_truth, tmp_path)
    fresh = simulated.simulate(again, truth=truth, difficulty=difficulty, population=population)
    kept = simulated.simulate(
        again, truth=truth, difficulty=difficulty, population=population, examined=examined, banned=banned
    )
    assert not set(kept.exams["worker"]) & examined  # exams taken only by newcomers, if any
    assert not set(kept.answers["worker"]) & banned
    assert set(fresh.answers["worker"]) & banned  # a fresh round would have let them back in
    price = inputs.spec.exam_price
    # Most of a fresh round's exams are those of people already examined: they are not paid again.
    assert kept.cost < fresh.cost - price * len(examined) / 2
    assert kept.tasks_done == fresh.tasks_done == later.height
