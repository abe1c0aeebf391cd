"""Toloka's platform rules (iris.crowd.platform) on small hand-made tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from iris import tables
from iris.crowd import platform, quality
from iris.crowd.spec import FastRule, HoneypotRule, MajorityRule, QualityRules

T0 = datetime(2025, 1, 1, tzinfo=UTC)
GOLD = pl.DataFrame(
    {"task": [900 + i for i in range(20)], "label": [1] * 20}, schema={"task": pl.Int64, "label": pl.Int8}
)


def _rules(*, overlap: int = 3, hp_window: int = 5, mv_window: int = 4) -> platform.TolokaRules:
    return platform.TolokaRules.of(
        QualityRules(
            fast=FastRule(min_seconds=20, ban_days=1, page_size=10),
            honeypot=HoneypotRule(min_accuracy=0.6, window=hp_window, ban_days=7),
            majority=MajorityRule(min_agreement=0.6, window=mv_window, ban_days=7),
        ),
        overlap=overlap,
    )


def _honeypot_pages(pattern: list[int]) -> pl.DataFrame:
    """One page per entry: one honeypot answered right (1) or wrong (0)."""
    return pl.DataFrame(
        {
            "task": [900 + i for i in range(len(pattern))],
            "worker": "w",
            "label": pattern,
            "page": [f"p{i:02d}" for i in range(len(pattern))],
            "submitted_at": [T0 + timedelta(minutes=i) for i in range(len(pattern))],
            "duration": 100.0,
            "is_honeypot": True,
        },
        schema=tables.ANSWERS,
    )


def test_honeypot_ban_fires_when_the_window_first_falls_below() -> None:
    # Window 5: 4/5, 3/5, then 2/5 on page 6 (ban); the last five pages are all right again.
    answers = _honeypot_pages([1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1])
    bans = platform.evaluate(answers, GOLD, _rules())
    assert bans.row(0, named=True)["at"] == T0 + timedelta(minutes=6)
    assert bans["detail"].to_list() == ["2/5 honeypots right < 0.6"]
    # iris's local rule looks at the last window only and would not ban.
    assert quality.low_honeypot_accuracy(answers, GOLD, HoneypotRule(0.6, 5, 7)).height == 0


def test_the_batch_and_the_page_by_page_model_agree() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for page in range(60):
        worker = f"w{page % 6}"
        at = T0 + timedelta(minutes=page)
        for t in rng.choice(30, size=5, replace=False):
            rows.append((int(t), worker, int(rng.random() < 0.7), f"p{page:02d}", at, 30.0, False))
        rows.append((900 + page % 20, worker, int(rng.random() < 0.8), f"p{page:02d}", at, 30.0, True))
    answers = pl.DataFrame(rows, schema=tables.ANSWERS, orient="row")
    rules = _rules()
    qc = platform.TolokaQualityControl(rules, dict.fromkeys(range(900, 920), 1))
    for (page,), frame in answers.group_by("page", maintain_order=True):
        if frame["worker"][0] in qc.banned:
            continue
        qc.add_page(
            worker=frame["worker"][0],
            page=str(page),
            tasks=frame["task"].to_list(),
            labels=frame["label"].to_list(),
            is_honeypot=frame["is_honeypot"].to_list(),
            submitted_at=frame["submitted_at"][0],
            duration=30.0,
        )
    assert qc.frame().equals(platform.evaluate(answers, GOLD, rules))


def test_control_tasks_are_never_repeated_and_run_out() -> None:
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    pages = 0
    while (picked := platform.control_tasks_for_page(list(range(10)), n=3, seen=seen, rng=rng)) is not None:
        assert not seen & set(picked)
        seen |= set(picked)
        pages += 1
    assert pages == platform.max_pages_per_worker(10, 3) == 3
    assert platform.max_pages_per_worker(10, 0) is None


@pytest.mark.parametrize(
    ("overlap", "threshold", "usable"), [(1, 1, False), (2, 2, False), (3, 2, True), (5, 3, True)]
)
def test_majority_threshold(overlap: int, threshold: int, usable: bool) -> None:
    assert platform.majority_answer_threshold(overlap) == threshold
    assert platform.majority_rule_usable(overlap) is usable


def test_real_tasks_in_creation_order_or_at_random() -> None:
    rng = np.random.default_rng(0)
    available = list(range(100))
    assert platform.real_tasks_for_page(available, n=5, creation_order=True, rng=rng) == [0, 1, 2, 3, 4]
    assert platform.real_tasks_for_page(available, n=5, creation_order=False, rng=rng) != [0, 1, 2, 3, 4]
    assert platform.real_tasks_for_page([7, 3], n=5, creation_order=False, rng=rng) == [7, 3]


def test_the_simulated_crowd_bans_as_the_toloka_model_replayed() -> None:
    """A dry run's bans are the ones Toloka's model finds on its answers (the report's view)."""
    from iris.config import Settings
    from iris.crowd.backends.base import CampaignInputs
    from iris.crowd.backends.simulated import simulate
    from iris.crowd.spec import CampaignSpec, split_ground_truth

    rng = np.random.default_rng(1)
    n_gt, n_tasks = 90, 400
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
    # Every Toloka rule on; the skill rule off (iris applies it on top of Toloka's, so a replay of
    # Toloka's rules alone would not see its bans).
    base = Settings()
    crowd = replace(
        base.crowd,
        min_seconds_per_page=20.0,
        min_honeypot_accuracy=0.6,
        honeypot_window=5,
        min_majority_agreement=0.6,
        min_skill=0.0,
    )
    spec = CampaignSpec.from_settings(replace(base, crowd=crowd))
    tasks = images.filter(pl.col("split") == "pool").select("id", "source", "path").with_row_index("priority")
    inputs = CampaignInputs(spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=None)  # type: ignore[arg-type]
    truth = {int(i): int(v) for i, v in zip(ids, labels, strict=True)}
    population: dict[str, float | int] = {
        "workers": 30,
        "spammers": 0.3,
        "fast_clickers": 0.1,
        "pages_per_worker": 8,
        "seed": 1,
    }
    result = simulate(inputs, truth=truth, difficulty={}, population=population)
    assert result.bans.height > 0
    replayed = platform.evaluate(
        result.answers, inputs.gold, platform.TolokaRules.of(spec.rules, overlap=spec.overlap)
    )
    assert replayed.sort("worker").equals(result.bans.sort("worker"))
    pages = result.answers.group_by("worker").agg(pl.col("page").n_unique())["page"]
    assert int(pages.max()) <= platform.max_pages_per_worker(inputs.role("honeypot").height, 1)  # type: ignore[arg-type, operator]
