"""The aggregate stage: ``tables/answers`` → ``tables/aggregated`` and ``tables/workers``.

The aggregators themselves (crowd-kit wrappers, :data:`~iris.crowd.aggregation.AGGREGATORS`)
are :mod:`iris.crowd.aggregation`; gold (the honeypots' labels) and bans come from the
campaign state in ``WORK/crowd`` (:mod:`iris.crowd.campaign`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import polars as pl

from iris import tables
from iris.config import AggregateMethod, Settings
from iris.contract import StageContext, StageReport
from iris.crowd.campaign import aggregate_collected
from iris.stagekit import launched_tasks
from iris.workdir import Workdir


def _mean(series: pl.Series) -> float:
    value = series.mean()
    return float(value) if isinstance(value, int | float) else 0.0


@dataclass(frozen=True)
class AggregateReport(StageReport):
    """What ``iris aggregate`` did, in numbers."""

    method: str
    tasks: int
    positive: int
    negative: int
    mean_confidence: float
    low_confidence: int
    """Tasks whose label has confidence below 0.7."""
    workers: int
    banned: int


def aggregate_workdir(workdir: Workdir, settings: Settings, *, method: str | None = None) -> AggregateReport:
    """Aggregate ``tables/answers`` into ``tables/aggregated`` and ``tables/workers``.

    Gold (the honeypots' labels) and bans come from the campaign state in ``WORK/crowd``.
    When the crowd had nothing to do (no campaign with tasks, no answer on a real task) both
    tables are written empty: propagation then labels from the ground truth and the
    automatic labels.
    """
    name = method or settings.aggregate.method
    answers = tables.read(workdir.table("answers"), tables.ANSWERS)
    if not launched_tasks(workdir) and not answers.filter(~pl.col("is_honeypot")).height:
        tables.write(pl.DataFrame(schema=tables.AGGREGATED), workdir.table("aggregated"))
        tables.write(pl.DataFrame(schema=tables.WORKERS), workdir.table("workers"))
        return AggregateReport(
            method=name,
            tasks=0,
            positive=0,
            negative=0,
            mean_confidence=0.0,
            low_confidence=0,
            workers=0,
            banned=0,
        )
    result = aggregate_collected(
        workdir,
        # An unknown method is refused by the aggregator with one line (ConfigError).
        settings
        if method is None
        else replace(settings, aggregate=replace(settings.aggregate, method=cast("AggregateMethod", name))),
        answers,
    )
    tables.write(result.tasks, workdir.table("aggregated"))
    tables.write(result.workers, workdir.table("workers"))
    t = result.tasks
    return AggregateReport(
        method=name,
        tasks=t.height,
        positive=int((t["label"] == 1).sum()),
        negative=int((t["label"] == 0).sum()),
        mean_confidence=round(_mean(t["confidence"]), 4),
        low_confidence=int((t["confidence"] < 0.7).sum()),
        workers=result.workers.height,
        banned=int(result.workers["banned"].sum()),
    )


def run(ctx: StageContext) -> AggregateReport:
    """The aggregate stage (:func:`aggregate_workdir` with ``[aggregate]`` settings)."""
    return aggregate_workdir(ctx.workdir, ctx.settings)
