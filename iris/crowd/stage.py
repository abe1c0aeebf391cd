"""The crowd stage of ``iris run``: launch (or resume) the campaign and collect its answers.

The campaign itself (plan, launch, status, collect, stop, with its state under
``WORK/crowd``) is :mod:`iris.crowd.campaign`; this module is its stage entry point.
"""

from __future__ import annotations

from iris.config import Settings
from iris.contract import StageContext
from iris.crowd.campaign import CampaignReport, bans_by_rule, collect, launch, status
from iris.errors import CrowdError
from iris.workdir import Workdir


def run_campaign(workdir: Workdir, settings: Settings) -> CampaignReport:
    """Launch (or resume) the campaign and collect its answers: what ``iris run`` calls.

    For the simulated crowd this runs the whole campaign (a killed run resumes without
    buying any page twice); for Toloka it collects what has been accepted so far.
    """
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
