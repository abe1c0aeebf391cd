"""Aggregation: a 5×5 toy table with expected outputs, gold for Dawid-Skene, contracts, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from iris import tables
from iris.crowd.aggregation import AGGREGATORS, aggregate
from iris.errors import ColumnError, ConfigError, InputError

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TRUTH = {1: 1, 2: 0, 3: 1, 4: 0, 5: 1}


def frame(rows: list[tuple[int, str, int, bool]], *, duration: float = 60.0) -> pl.DataFrame:
    """rows: (task, worker, label, is_honeypot); each worker's answers form one page."""
    return pl.DataFrame(
        [
            {
                "task": t,
                "worker": w,
                "label": label,
                "page": f"{w}-p",
                "submitted_at": T0 + timedelta(seconds=i),
                "duration": duration,
                "is_honeypot": hp,
            }
            for i, (t, w, label, hp) in enumerate(rows)
        ],
        schema=tables.ANSWERS,
    )


# Three careful workers, one who always answers wrong, one who always answers 1.
TOY = frame(
    [(t, w, y, False) for t, y in TRUTH.items() for w in ("w1", "w2", "w3")]
    + [(t, "w4", 1 - y, False) for t, y in TRUTH.items()]
    + [(t, "w5", 1, False) for t in TRUTH]
)


def test_majority_vote_on_the_toy() -> None:
    out = aggregate(TOY, method="majority-vote")
    assert out.tasks.rows() == [
        (1, 1, 0.8, 5),
        (2, 0, 0.6, 5),
        (3, 1, 0.8, 5),
        (4, 0, 0.6, 5),
        (5, 1, 0.8, 5),
    ]
    skills = dict(out.workers.select("worker", "skill").rows())
    assert skills == {"w1": 1.0, "w2": 1.0, "w3": 1.0, "w4": 0.0, "w5": 0.6}


@pytest.mark.parametrize("method", sorted(AGGREGATORS))
def test_every_method_recovers_the_toy_truth(method: str) -> None:
    out = aggregate(TOY, method=method)
    assert dict(out.tasks.select("task", "label").rows()) == TRUTH
    assert out.tasks.schema == pl.Schema(tables.AGGREGATED)
    assert out.workers.schema == pl.Schema(tables.WORKERS)
    assert ((out.tasks["confidence"] >= 0.5) & (out.tasks["confidence"] <= 1.0)).all()
    skills = dict(out.workers.select("worker", "skill").rows())
    assert skills["w1"] > skills["w5"] > skills["w4"]


def test_dawid_skene_trusts_the_worker_right_on_honeypots() -> None:
    # A and B disagree on every real task; only the honeypots say who is right.
    real = [(t, "A", t % 2, False) for t in range(1, 5)] + [(t, "B", 1 - t % 2, False) for t in range(1, 5)]
    honeypots = [(h, "A", 1, True) for h in (101, 102, 103)] + [(h, "B", 0, True) for h in (101, 102, 103)]
    gold = pl.DataFrame(
        {"task": [101, 102, 103], "label": [1, 1, 1]}, schema={"task": pl.Int64, "label": pl.Int8}
    )
    answers = frame(real + honeypots)
    ds = aggregate(answers, method="dawid-skene", gold=gold)
    assert dict(ds.tasks.select("task", "label").rows()) == {t: t % 2 for t in range(1, 5)}
    assert set(ds.tasks["task"]) == {1, 2, 3, 4}  # honeypots are not in the output
    workers = {r["worker"]: r for r in ds.workers.iter_rows(named=True)}
    assert workers["A"]["honeypot_accuracy"] == 1.0 and workers["B"]["honeypot_accuracy"] == 0.0
    assert workers["A"]["skill"] > 0.9 > 0.1 > workers["B"]["skill"]
    # Majority vote cannot tell A from B: every task is a coin toss.
    mv = aggregate(answers, method="majority-vote", gold=gold, use_honeypots=False)
    assert mv.tasks["confidence"].to_list() == [0.5] * 4


def test_worker_table_counts_answers_time_and_bans() -> None:
    out = aggregate(TOY, method="wawa", banned=["w4"])
    rows = {r["worker"]: r for r in out.workers.iter_rows(named=True)}
    assert rows["w4"]["banned"] and not rows["w1"]["banned"]
    assert rows["w1"]["answers"] == 5
    assert rows["w1"]["seconds"] == 60.0  # one page of 60 s, counted once
    assert rows["w1"]["honeypot_accuracy"] is None  # no gold given


def _synthetic(seed: int) -> tuple[pl.DataFrame, pl.DataFrame, dict[int, int]]:
    """400 tasks × overlap 3 from 20 workers, 4 of them (20%) spammers; 30 honeypots."""
    rng = np.random.default_rng(seed)
    truth = {t: int(rng.integers(0, 2)) for t in range(400)}
    gold_ids = list(range(1000, 1030))
    gold = {h: int(rng.integers(0, 2)) for h in gold_ids}
    skill = {f"w{i}": (0.5 if i < 4 else float(rng.uniform(0.65, 0.95))) for i in range(20)}
    names = list(skill)
    rows: list[tuple[int, str, int, bool]] = []
    for t, y in truth.items():
        for w in rng.choice(names, size=3, replace=False):
            rows.append((t, str(w), y if rng.random() < skill[str(w)] else 1 - y, False))
    for w in names:
        for h in rng.choice(gold_ids, size=8, replace=False):
            y = gold[int(h)]
            rows.append((int(h), w, y if rng.random() < skill[w] else 1 - y, True))
    gold_frame = pl.DataFrame(
        {"task": list(gold), "label": list(gold.values())}, schema={"task": pl.Int64, "label": pl.Int8}
    )
    return frame(rows), gold_frame, truth


def _accuracy(out: pl.DataFrame, truth: dict[int, int]) -> float:
    return float(np.mean([truth[t] == y for t, y in out.select("task", "label").rows()]))


def test_dawid_skene_beats_majority_vote_with_20_percent_spammers() -> None:
    answers, gold, truth = _synthetic(seed=3)
    mv = _accuracy(aggregate(answers, method="majority-vote", gold=gold).tasks, truth)
    ds = _accuracy(aggregate(answers, method="dawid-skene", gold=gold).tasks, truth)
    assert ds > mv + 0.01, (ds, mv)


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match=r"aggregate\.method: got .vote., expected one of"):
        aggregate(TOY, method="vote")
    with pytest.raises(ColumnError, match="missing column"):
        aggregate(TOY.drop("is_honeypot"), method="wawa")
    with pytest.raises(InputError, match="label other than 0/1"):
        aggregate(TOY.with_columns(label=pl.lit(2, dtype=pl.Int8)), method="wawa")
    with pytest.raises(InputError, match="no answers on real tasks"):
        aggregate(TOY.with_columns(is_honeypot=pl.lit(True)), method="wawa")
