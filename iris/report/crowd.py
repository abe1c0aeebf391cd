"""The crowd campaign report: cost, answers, bans, agreement, and a PNG of worker skills."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from iris import tables
from iris.config import Settings
from iris.crowd import campaign
from iris.crowd.quality import majority_agreement
from iris.workdir import Workdir


@dataclass(frozen=True)
class CrowdSummary(campaign.CampaignReport):
    """The campaign in numbers plus how well the crowd agreed (``iris crowd report``)."""

    unanimous: float = 0.0
    """Share of real tasks on which every answer agreed."""
    majority_agreement: float = 0.0
    """Mean share of a worker's answers that agree with the others' majority."""
    honeypot_accuracy: float | None = None
    """Share of honeypot answers that were right."""
    skill_source: str = ""
    """Where worker skills came from: the workers table, or an aggregation run for the report."""


def _mean(series: pl.Series) -> float:
    value = series.cast(pl.Float64).mean()
    return float(value) if isinstance(value, int | float) else 0.0


def summarize(workdir: Workdir, settings: Settings) -> tuple[CrowdSummary, pl.DataFrame]:
    """Numbers for the report, and the WORKERS table they were drawn from.

    The workers table of the last ``iris aggregate`` is used when present; otherwise the
    configured aggregation method is run (nothing is written).
    """
    from iris.crowd.aggregation import aggregate

    status = campaign.status(workdir, settings)
    answers = tables.read(workdir.table("answers"), tables.ANSWERS)
    bans = campaign.read_bans(workdir)
    gold = campaign.read_gold(workdir)
    if workdir.table("workers").exists():
        workers = tables.read(workdir.table("workers"), tables.WORKERS)
        source = "tables/workers.parquet (the last `iris aggregate`)"
    else:
        result = aggregate(
            answers, method=settings.aggregate.method, gold=gold, banned=bans["worker"].to_list()
        )
        workers, source = result.workers, f"{settings.aggregate.method} (computed for this report)"
    real = answers.filter(~pl.col("is_honeypot"))
    per_task = real.group_by("task").agg(pl.col("label").n_unique().alias("kinds"))
    hp = answers.filter(pl.col("is_honeypot")).join(gold.rename({"label": "truth"}), on="task")
    agreement = majority_agreement(answers, ignore=bans["worker"].to_list())
    summary = CrowdSummary(
        backend=status.backend,
        state=status.state,
        cost=status.cost,
        tasks=status.tasks_total,
        tasks_done=status.tasks_done,
        pages=int(answers["page"].n_unique()),
        answers=answers.height,
        honeypot_answers=int(answers["is_honeypot"].sum()),
        workers=int(answers["worker"].n_unique()),
        banned=bans.height,
        bans_by_rule=campaign.bans_by_rule(bans),
        unanimous=round(_mean(per_task["kinds"] == 1), 4),
        majority_agreement=round(_mean(agreement["agreement"]), 4),
        honeypot_accuracy=round(_mean(hp["label"] == hp["truth"]), 4) if hp.height else None,
        skill_source=source,
    )
    return summary, workers


def plot_worker_skills(workers: pl.DataFrame, path: Path, *, title: str = "worker skills") -> Path:
    """Scatter of each worker's estimated skill against their honeypot accuracy.

    Marker area grows with the worker's answers; banned workers are drawn as red crosses.

    Args:
        workers: WORKERS table.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    w = workers.with_columns(pl.col("honeypot_accuracy").fill_null(-0.05))
    most = w["answers"].max()
    scale = float(most) if isinstance(most, int | float) and most > 0 else 1.0
    size = (w["answers"].cast(pl.Float64) / scale * 120 + 10).to_list()
    for banned, colour, marker, label in (
        (False, "tab:blue", "o", "active"),
        (True, "tab:red", "x", "banned"),
    ):
        mask = (w["banned"] == banned).to_list()
        xs = [x for x, m in zip(w["skill"].to_list(), mask, strict=True) if m]
        ys = [y for y, m in zip(w["honeypot_accuracy"].to_list(), mask, strict=True) if m]
        ss = [s for s, m in zip(size, mask, strict=True) if m]
        ax.scatter(xs, ys, s=ss, c=colour, marker=marker, alpha=0.7, label=f"{label} ({len(xs)})")
    ax.set_xlabel("estimated skill (P(right answer))")
    ax.set_ylabel("honeypot accuracy (−0.05: none seen)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.1, 1.05)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.legend(loc="lower right")
    ax.set_title(title)
    skills = workers["skill"].drop_nulls().to_list()
    hist.hist(skills, bins=20, range=(0, 1), color="tab:blue", alpha=0.8)
    hist.set_xlabel("estimated skill")
    hist.set_ylabel("workers")
    hist.set_title("skill distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def crowd_report(workdir: Workdir, settings: Settings) -> tuple[CrowdSummary, Path]:
    """Summarize the campaign and draw ``reports/worker_skills.png``."""
    summary, workers = summarize(workdir, settings)
    png = plot_worker_skills(
        workers,
        workdir.reports / "worker_skills.png",
        title=f"worker skills ({summary.skill_source.split(' ')[0]})",
    )
    return summary, png
