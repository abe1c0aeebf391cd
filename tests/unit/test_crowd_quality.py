"""Every quality-control rule, firing and not firing, on small hand-made answer tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from iris import tables
from iris.crowd import quality
from iris.crowd.spec import FastRule, HoneypotRule, MajorityRule, QualityRules

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def answers(rows: list[tuple[int, str, int, str, float, bool]], *, start: datetime = T0) -> pl.DataFrame:
    """rows: (task, worker, label, page, duration, is_honeypot); pages are submitted in order."""
    pages: dict[str, datetime] = {}
    out = []
    for task, worker, label, page, duration, hp in rows:
        at = pages.setdefault(page, start + timedelta(minutes=len(pages)))
        out.append(
            {
                "task": task,
                "worker": worker,
                "label": label,
                "page": page,
                "submitted_at": at,
                "duration": duration,
                "is_honeypot": hp,
            }
        )
    return pl.DataFrame(out, schema=tables.ANSWERS)


GOLD = pl.DataFrame(
    {"task": [900 + i for i in range(10)], "label": [1] * 10}, schema={"task": pl.Int64, "label": pl.Int8}
)


# ---------------------------------------------------------------- fast answers


@pytest.mark.parametrize(("duration", "fires"), [(5.0, True), (19.9, True), (20.0, False), (300.0, False)])
def test_fast_rule(duration: float, fires: bool) -> None:
    a = answers([(t, "w", 1, "p1", duration, False) for t in range(50)])
    found = quality.fast_pages(a, FastRule(min_seconds=20, ban_days=1, page_size=50))
    assert (found.height == 1) is fires


def test_fast_rule_prorates_short_pages() -> None:
    # 5 tasks of a 50-task page: 20 s × 5/50 = 2 s is the bar, so 3 s is not fast...
    a = answers([(t, "w", 1, "p1", 3.0, False) for t in range(5)])
    assert quality.fast_pages(a, FastRule(min_seconds=20, ban_days=1, page_size=50)).height == 0
    # ...but without pro-rating it is.
    assert quality.fast_pages(a, FastRule(min_seconds=20, ban_days=1)).height == 1


# ---------------------------------------------------------------- honeypot accuracy


def _honeypot_answers(pattern: list[int]) -> pl.DataFrame:
    """One honeypot per page; ``pattern`` is 1 for a right answer, 0 for a wrong one."""
    return answers([(900 + i, "w", right, f"p{i}", 60.0, True) for i, right in enumerate(pattern)])


@pytest.mark.parametrize(
    ("pattern", "fires"),
    [
        ([1, 1, 0, 0, 0], True),  # 2/5 = 0.4 < 0.6
        ([1, 1, 1, 0, 0], False),  # 3/5 = 0.6 is not below 0.6
        ([0, 0, 0, 0], False),  # only 4 honeypots: the window is not full yet
        ([0, 0, 0, 1, 1, 1, 1, 1], False),  # the last 5 are right: early mistakes age out
        ([1, 1, 1, 1, 1, 0, 0, 0], True),  # the last 5 hold 3 mistakes
    ],
)
def test_honeypot_rule(pattern: list[int], fires: bool) -> None:
    rule = HoneypotRule(min_accuracy=0.6, window=5, ban_days=7)
    found = quality.low_honeypot_accuracy(_honeypot_answers(pattern), GOLD, rule)
    assert (found.height == 1) is fires


def test_honeypot_accuracy_ignores_real_tasks() -> None:
    a = pl.concat(
        [_honeypot_answers([1, 0]), answers([(1, "w", 0, "px", 60.0, False)], start=T0 + timedelta(days=1))]
    )
    acc = quality.honeypot_accuracy(a, GOLD)
    assert acc.row(0, named=True) == {"worker": "w", "honeypots": 2, "correct": 1, "accuracy": 0.5}


# ---------------------------------------------------------------- majority agreement


def _panel(worker_labels: list[int], *, others: int = 2, n: int = 20) -> pl.DataFrame:
    """Tasks 0..n-1: ``others`` workers answer 1, worker "w" answers worker_labels[t]."""
    rows = []
    for t in range(n):
        for o in range(others):
            rows.append((t, f"o{o}", 1, f"o{o}-p", 60.0, False))
        rows.append((t, "w", worker_labels[t], "w-p", 60.0, False))
    return answers(rows)


@pytest.mark.parametrize(
    ("agreeing", "fires"),
    [(11, True), (12, False), (20, False), (0, True)],  # 11/20 = 0.55 < 0.6; 12/20 = 0.6 is not below
)
def test_majority_rule(agreeing: int, fires: bool) -> None:
    labels = [1] * agreeing + [0] * (20 - agreeing)
    rule = MajorityRule(min_agreement=0.6, window=20, ban_days=7, min_others=2)
    found = quality.low_majority_agreement(_panel(labels), rule)
    assert ("w" in found["worker"].to_list()) is fires


def test_majority_rule_needs_a_full_window() -> None:
    rule = MajorityRule(min_agreement=0.6, window=20, ban_days=7)
    assert quality.low_majority_agreement(_panel([0] * 19, n=19), rule).height == 0


def test_majority_rule_needs_enough_other_answers() -> None:
    rule = MajorityRule(min_agreement=0.6, window=20, ban_days=7, min_others=2)
    # Only one other worker per task: not a majority to judge against.
    assert quality.low_majority_agreement(_panel([0] * 20, others=1), rule).height == 0


def test_majority_rule_ignores_banned_workers() -> None:
    rule = MajorityRule(min_agreement=0.6, window=20, ban_days=7, min_others=2)
    a = _panel([0] * 20)
    assert "w" in quality.low_majority_agreement(a, rule)["worker"].to_list()
    # When o0 and o1 are banned spammers, "w" has nobody left to disagree with.
    assert quality.low_majority_agreement(a, rule, ignore={"o0", "o1"}).height == 0


def test_majority_ties_among_others_say_nothing() -> None:
    rows = []
    for t in range(20):
        rows += [
            (t, "a", 1, "a-p", 60.0, False),
            (t, "b", 0, "b-p", 60.0, False),
            (t, "w", 0, "w-p", 60.0, False),
        ]
    agreement = quality.majority_agreement(answers(rows), min_others=2)
    assert "w" not in agreement["worker"].to_list()  # a and b tie on every task


# ---------------------------------------------------------------- all rules together


RULES = QualityRules(
    fast=FastRule(min_seconds=20, ban_days=1, page_size=50),
    honeypot=HoneypotRule(min_accuracy=0.6, window=5, ban_days=7),
    majority=MajorityRule(min_agreement=0.6, window=20, ban_days=7, min_others=2),
)


def test_evaluate_bans_each_worker_once_with_the_first_rule() -> None:
    fast_and_wrong = answers(
        [(900 + i, "x", 0, f"x{i}", 0.1, True) for i in range(5)]
        + [(900 + i, "ok", 1, f"ok{i}", 60.0, True) for i in range(5)]
    )
    bans = quality.evaluate(fast_and_wrong, GOLD, RULES, now=T0)
    assert bans.select("worker", "rule").rows() == [("x", "fast")]
    assert bans["until"][0] == T0 + timedelta(days=1)
    assert bans.schema == pl.Schema(quality.BANS)
    assert quality.evaluate(fast_and_wrong, GOLD, RULES, now=T0, already_banned={"x"}).height == 0


def test_evaluate_on_good_answers_bans_nobody() -> None:
    good = answers([(900 + i, "w", 1, f"p{i}", 60.0, True) for i in range(10)])
    assert quality.evaluate(good, GOLD, RULES, now=T0).height == 0
