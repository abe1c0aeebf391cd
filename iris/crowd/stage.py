"""The crowd stage of ``iris run``: launch (or resume) the campaign and collect its answers.

The campaign itself (plan, launch, status, collect, stop, with its state under
``WORK/crowd``) is :mod:`iris.crowd.campaign`; this module is its stage entry point.

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
from iris.crowd.campaign import CampaignReport, bans_by_rule, collect, launch, status
from iris.errors import CrowdError
from iris.stagekit import launched_tasks
from iris.workdir import Workdir

SKIPPED = "skipped"
"""The state of a crowd stage that had nothing to send."""


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
    """Launch (or resume) the campaign and collect its answers: what ``iris run`` calls.

    For the simulated crowd this runs the whole campaign (a killed run resumes without
    buying any page twice); for Toloka it collects what has been accepted so far. With
    nothing to send (:func:`nothing_to_send`) it launches nothing and writes an empty
    answers table.
    """
    if nothing_to_send(workdir):
        tables.write(pl.DataFrame(schema=tables.ANSWERS), workdir.table("answers"))
        return CampaignReport(
            backend=settings.crowd.backend,
            state=SKIPPED,
            tasks=0,
            tasks_done=0,
            pages=0,
            answers=0,
            honeypot_answers=0,
            workers=0,
            banned=0,
            bans_by_rule={},
            cost=0.0,
            next_step="",
        )
    launch(workdir, settings)
    collected = collect(workdir, settings)
    st = status(workdir, settings)
    answers = collected.answers
    return CampaignReport(
        backend=st.backend,
        state=st.state,
        tasks=st.tasks_total,
        tasks_done=st.tasks_done,
        pages=st.pages,
        answers=answers.height,
        honeypot_answers=int(answers["is_honeypot"].sum()),
        workers=st.workers,
        banned=collected.bans.height,
        bans_by_rule=bans_by_rule(collected.bans),
        cost=st.cost,
        next_step=str(st.detail.get("next_step", "")),
    )


def run(ctx: StageContext) -> CampaignReport:
    """The crowd stage: the whole campaign for the simulated crowd, what has come in for a real one.

    Raises:
        CrowdError: a real crowd's campaign is not complete yet (the answers so far are
            kept; running again later collects the rest and goes on).
    """
    report = run_campaign(ctx.workdir, ctx.settings)
    if report.state == SKIPPED:
        ctx.echo("[crowd] the shortlist holds no image to send: no campaign launched, nothing bought")
        return report
    if report.state != "complete":
        # A real crowd takes hours: keep what was collected and let the user come back.
        raise CrowdError(
            f"the {report.backend} crowd campaign is {report.state}: {report.tasks_done}/{report.tasks} "
            "tasks have their answers; "
            + (f"{report.next_step}; " if report.next_step else "")
            + "run `iris run` again later to collect and go on"
        )
    if report.tasks_done < report.tasks:
        ctx.echo(
            f"[crowd] warning: only {report.tasks_done}/{report.tasks} tasks got their full overlap "
            "(the crowd ran out); the rest are labeled from what answers they have, or by propagation"
        )
    return report
