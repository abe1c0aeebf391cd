"""The crowd stage of ``iris run``: buy the crowd's answers, in rounds or in one campaign.

With ``[rounds] strategy`` other than ``seed`` the stage is the rounds loop
(:mod:`iris.rounds.loop`): pick a round, buy it, aggregate, re-label, audit, again. With
``seed`` it is the seed's method: one campaign on the select stage's shortlist. The
campaign itself (plan, launch, status, collect, stop, with its state under ``WORK/crowd``)
is :mod:`iris.crowd.campaign`.

A shortlist with no image to send (an empty pool, or one labeled automatically throughout)
launches nothing: no training, no exam, nothing bought. The stage writes an empty answers
table and reports the state ``skipped``; aggregate then writes empty tables and the run
goes on to propagation.
"""

from __future__ import annotations

import polars as pl

from iris import tables
from iris.config import Settings
from iris.contract import StageContext
from iris.crowd.campaign import (
    SKIPPED,
    CampaignReport,
    campaign_report,
    collect,
    launch,
    require_complete,
    skipped_report,
)
from iris.stagekit import launched_tasks
from iris.workdir import Workdir


def tasks_to_send(workdir: Workdir) -> int:
    """Shortlisted images a campaign would send (ground truth is never a task).

    Raises:
        StageOrderError: no shortlist or images table yet.
    """
    shortlist = tables.read(workdir.table("shortlist"), tables.SHORTLIST)
    images = tables.read(workdir.table("images"), tables.IMAGES)
    gt = images.filter(pl.col("split") == tables.Split.GT.value).select("id")
    return shortlist.join(gt, on="id", how="anti").height


def nothing_to_send(workdir: Workdir) -> bool:
    """True when no campaign with tasks was launched and the shortlist holds none to send."""
    return not launched_tasks(workdir) and tasks_to_send(workdir) == 0


def run_campaign(workdir: Workdir, settings: Settings) -> CampaignReport:
    """Launch (or resume) the campaign on the shortlist and collect its answers.

    For the simulated crowd this runs the whole campaign (a killed run resumes without
    buying any page twice); for Toloka it collects what has been accepted so far. With
    nothing to send (:func:`nothing_to_send`) it launches nothing and writes an empty
    answers table.
    """
    if nothing_to_send(workdir):
        tables.write(pl.DataFrame(schema=tables.ANSWERS), workdir.table("answers"))
        return skipped_report(settings)
    launch(workdir, settings)
    return campaign_report(workdir, settings, collect(workdir, settings))


def run(ctx: StageContext) -> CampaignReport:
    """The crowd stage: the rounds loop, or the seed's one campaign (``[rounds] strategy = "seed"``).

    Raises:
        CrowdError: a real crowd's campaign is not complete yet (the answers so far are
            kept; running again later collects the rest and goes on).
    """
    if ctx.settings.rounds.loop:
        from iris.rounds.loop import run_rounds

        return run_rounds(ctx)
    report = run_campaign(ctx.workdir, ctx.settings)
    if report.state == SKIPPED:
        ctx.echo("[crowd] the shortlist holds no image to send: no campaign launched, nothing bought")
        return report
    require_complete(report)
    if report.tasks_done < report.tasks:
        ctx.echo(
            f"[crowd] warning: only {report.tasks_done}/{report.tasks} tasks got their full overlap "
            "(the crowd ran out); the rest are labeled from what answers they have, or by propagation"
        )
    return report
