"""The aggregate stage: ``tables/answers`` → ``tables/aggregated`` and ``tables/workers``.

The aggregators themselves (crowd-kit wrappers, :data:`~iris.crowd.aggregation.AGGREGATORS`)
are :mod:`iris.crowd.aggregation`; gold (the honeypots' labels) and bans come from the
campaign state in ``WORK/crowd`` (:mod:`iris.crowd.campaign`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from iris import tables
from iris.config import Settings
from iris.contract import StageContext, StageReport
from iris.crowd.aggregation import aggregate
from iris.crowd.campaign import read_bans, read_gold
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
    """
    name = method or settings.aggregate.method
    answers = tables.read(workdir.table("answers"), tables.ANSWERS)
    result = aggregate(
        answers,
        method=name,
        gold=read_gold(workdir),
        banned=read_bans(workdir)["worker"].to_list(),
        use_honeypots=settings.aggregate.use_honeypots,
        n_iter=settings.aggregate.n_iter,
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
