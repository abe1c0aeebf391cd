"""Quality control rules as pure functions over the answers table.

Each rule reads the ANSWERS table (task, worker, label, page, submitted_at, duration,
is_honeypot) and returns the workers it fires on, with the evidence. The simulated crowd
applies them after every page; the Toloka backend configures the same rules on the pool
(FastSubmittedResults / GoldenSet / MajorityVote collectors) and iris re-checks them on the
collected answers for the report.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import polars as pl

from iris.crowd.spec import FastRule, HoneypotRule, MajorityRule, QualityRules
from iris.tables import BANS


def fast_pages(answers: pl.DataFrame, rule: FastRule) -> pl.DataFrame:
    """Pages submitted faster than ``rule.min_seconds`` (pro-rated for short pages).

    Returns:
        worker, page, duration, threshold, submitted_at — one row per fast page, earliest first.
    """
    pages = answers.group_by("worker", "page").agg(
        pl.col("duration").max(), pl.col("submitted_at").max(), tasks=pl.len()
    )
    share = (pl.col("tasks") / rule.page_size).clip(upper_bound=1.0) if rule.page_size else pl.lit(1.0)
    pages = pages.with_columns(threshold=rule.min_seconds * share)
    return (
        pages.filter(pl.col("duration") < pl.col("threshold"))
        .select("worker", "page", "duration", "threshold", "submitted_at")
        .sort("submitted_at", "worker", "page")
    )


def honeypot_accuracy(
    answers: pl.DataFrame, gold: pl.DataFrame, *, window: int | None = None
) -> pl.DataFrame:
    """Each worker's accuracy on honeypots (on the last ``window`` of them when given).

    Args:
        answers: ANSWERS table.
        gold: task, label — the known answers of the honeypots.
        window: only the latest ``window`` honeypot answers per worker count.

    Returns:
        worker, honeypots (answers counted), correct, accuracy.
    """
    hp = (
        answers.filter(pl.col("is_honeypot"))
        .join(gold.select("task", pl.col("label").alias("truth")), on="task", how="inner")
        .sort("worker", "submitted_at", "task")
    )
    if window is not None:
        hp = hp.group_by("worker", maintain_order=True).tail(window)
    return (
        hp.group_by("worker")
        .agg(
            honeypots=pl.len().cast(pl.Int32),
            correct=(pl.col("label") == pl.col("truth")).sum().cast(pl.Int32),
        )
        .with_columns(accuracy=pl.col("correct") / pl.col("honeypots"))
        .sort("worker")
    )


def low_honeypot_accuracy(answers: pl.DataFrame, gold: pl.DataFrame, rule: HoneypotRule) -> pl.DataFrame:
    """Workers with at least ``rule.window`` honeypot answers whose accuracy on the last
    ``rule.window`` is below ``rule.min_accuracy``."""
    acc = honeypot_accuracy(answers, gold, window=rule.window)
    return acc.filter((pl.col("honeypots") >= rule.window) & (pl.col("accuracy") < rule.min_accuracy))


def majority_agreement(
    answers: pl.DataFrame, *, window: int | None = None, ignore: Collection[str] = (), min_others: int = 1
) -> pl.DataFrame:
    """Each worker's agreement with the majority of the *other* workers on the same task.

    A task counts for a worker only where at least ``min_others`` others answered and they
    reached a strict majority (a 1–1 tie among them says nothing). Honeypots are left out:
    they have their own rule. Answers of the ``ignore`` workers (those already banned) do not
    count towards anyone's majority: a good worker must not be banned for disagreeing with a
    spammer.

    Returns:
        worker, evaluated (tasks counted), agreed, agreement.
    """
    real = answers.filter(~pl.col("is_honeypot")).select("task", "worker", "label", "submitted_at")
    if ignore:
        real = real.filter(~pl.col("worker").is_in(list(ignore)))
    per_task = real.group_by("task").agg(n=pl.len(), pos=pl.col("label").cast(pl.Int32).sum())
    joined = real.join(per_task, on="task").with_columns(
        others=pl.col("n") - 1,
        others_pos=pl.col("pos") - pl.col("label").cast(pl.Int32),
    )
    decided = joined.filter(
        (pl.col("others") >= max(min_others, 1)) & (2 * pl.col("others_pos") != pl.col("others"))
    )
    decided = decided.with_columns(majority=(2 * pl.col("others_pos") > pl.col("others")).cast(pl.Int8)).sort(
        "worker", "submitted_at", "task"
    )
    if window is not None:
        decided = decided.group_by("worker", maintain_order=True).tail(window)
    return (
        decided.group_by("worker")
        .agg(
            evaluated=pl.len().cast(pl.Int32),
            agreed=(pl.col("label") == pl.col("majority")).sum().cast(pl.Int32),
        )
        .with_columns(agreement=pl.col("agreed") / pl.col("evaluated"))
        .sort("worker")
    )


def low_majority_agreement(
    answers: pl.DataFrame, rule: MajorityRule, *, ignore: Collection[str] = ()
) -> pl.DataFrame:
    """Workers with at least ``rule.window`` decided tasks whose agreement with the others'
    majority over the last ``rule.window`` is below ``rule.min_agreement``."""
    agr = majority_agreement(answers, window=rule.window, ignore=ignore, min_others=rule.min_others)
    return agr.filter((pl.col("evaluated") >= rule.window) & (pl.col("agreement") < rule.min_agreement))


def evaluate(
    answers: pl.DataFrame,
    gold: pl.DataFrame,
    rules: QualityRules,
    *,
    now: datetime,
    already_banned: set[str] | frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Apply every rule; one ban per newly caught worker (the first rule that fires wins).

    Returns:
        BANS table: worker, rule, detail, at (= ``now``), until.
    """
    rows: list[dict[str, object]] = []
    caught: set[str] = set(already_banned)

    def add(worker: str, rule: str, detail: str, days: int) -> None:
        if worker in caught:
            return
        caught.add(worker)
        rows.append(
            {"worker": worker, "rule": rule, "detail": detail, "at": now, "until": now + timedelta(days=days)}
        )

    for row in fast_pages(answers, rules.fast).iter_rows(named=True):
        add(
            row["worker"],
            "fast",
            f"page {row['page']} in {row['duration']:.1f}s < {row['threshold']:.3g}s",
            rules.fast.ban_days,
        )
    for row in low_honeypot_accuracy(answers, gold, rules.honeypot).iter_rows(named=True):
        add(
            row["worker"],
            "honeypot",
            f"{row['correct']}/{row['honeypots']} honeypots right < {rules.honeypot.min_accuracy:g}",
            rules.honeypot.ban_days,
        )
    majority = low_majority_agreement(answers, rules.majority, ignore=already_banned)
    for row in majority.iter_rows(named=True):
        add(
            row["worker"],
            "majority",
            f"agreed with the majority on {row['agreed']}/{row['evaluated']} "
            f"< {rules.majority.min_agreement:g}",
            rules.majority.ban_days,
        )
    return pl.DataFrame(rows, schema=BANS) if rows else pl.DataFrame(schema=BANS)
