"""``iris pseudolabel`` (automatic labels, then the shortlist) and ``iris select`` (the shortlist alone)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state, seed_option
from iris.vocabulary import METRICS, WEIGHTINGS

if TYPE_CHECKING:  # the stages import numpy and scikit-learn: keep them out of the CLI's start-up
    from iris.pseudolabel.stage import PseudolabelReport
    from iris.select import SelectReport

F = TypeVar("F", bound=Callable[..., Any])


def _select_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--neighbours",
                "-k",
                type=int,
                default=None,
                help="An image joins the shortlist when a problematic image is among its k nearest.",
            ),
            click.option("--budget", type=int, default=None, help="Cap on the shortlist size (0 = no cap)."),
            click.option(
                "--map-points",
                type=int,
                default=None,
                help="Points on reports/embedding_map.png (0 = no map).",
            ),
        ]
    ):
        func = option(func)
    return func


def _fraction(n: int, pool: int) -> str:
    return f"{n / pool:.1%}" if pool else "-"


def _rows(pl_report: PseudolabelReport | None, sel: SelectReport | None) -> list[dict[str, Any]]:
    pool = pl_report.pool if pl_report else sel.pool if sel else 0
    rows = [{"what": "pool (unlabeled)", "images": pool, "of pool": _fraction(pool, pool)}]
    if pl_report:
        rows.append({"what": "labeled (kNN voters)", "images": pl_report.labeled, "of pool": ""})
        rows.append(
            {"what": "auto-labeled", "images": pl_report.auto, "of pool": _fraction(pl_report.auto, pool)}
        )
        rows.append(
            {
                "what": "problematic",
                "images": pl_report.problematic,
                "of pool": _fraction(pl_report.problematic, pool),
            }
        )
    if sel:
        rows.append(
            {
                "what": "added as neighbours",
                "images": sel.neighbours,
                "of pool": _fraction(sel.neighbours, pool),
            }
        )
        rows.append({"what": "shortlist", "images": sel.shortlist, "of pool": _fraction(sel.shortlist, pool)})
        if sel.cut_by_budget:
            rows.append({"what": f"cut by budget {sel.budget}", "images": sel.cut_by_budget, "of pool": ""})
    return rows


def _estimate_line(report: PseudolabelReport) -> str:
    if report.estimate_n == 0:
        return "accuracy estimate: off (pseudolabel.estimate_folds = 0)"
    accuracy = "n/a" if report.estimate_accuracy is None else f"{report.estimate_accuracy:.3f}"
    if report.estimate_low is not None and report.estimate_high is not None:
        accuracy += f" (95% CI {report.estimate_low:.3f}-{report.estimate_high:.3f})"
    return (
        f"estimated accuracy of automatic labels ({report.estimate_method} on {report.estimate_n} labeled): "
        f"{accuracy}, on the {report.estimate_auto}/{report.estimate_n} "
        f"({report.estimate_auto / report.estimate_n:.1%}) that would be auto-labeled"
    )


def _echo(
    pl_report: PseudolabelReport | None, sel: SelectReport | None, map_path: Path | None, as_json: bool
) -> None:
    if as_json:
        data: dict[str, Any] = {}
        if pl_report:
            data["pseudolabel"] = pl_report.as_dict()
        if sel:
            data["select"] = sel.as_dict()
        data["map_path"] = None if map_path is None else str(map_path)
        click.echo(json.dumps(data, indent=2))
        return
    echo_table(_rows(pl_report, sel))
    if pl_report:
        click.echo(_estimate_line(pl_report))
    seconds = (pl_report.seconds if pl_report else 0) + (sel.seconds if sel else 0)
    qdrant = (pl_report.qdrant_seconds if pl_report else 0) + (sel.qdrant_seconds if sel else 0)
    click.echo(f"{seconds:.1f} s, of which {qdrant:.1f} s in Qdrant")
    if map_path is not None:
        click.echo(f"map: {map_path}")


def _select_overrides(neighbours: int | None, budget: int | None, map_points: int | None) -> dict[str, Any]:
    return {"neighbours": neighbours, "budget": budget, "map_points": map_points}


@click.command("pseudolabel")
@click.option(
    "--member",
    "members",
    multiple=True,
    help=(
        f"Ensemble member k<K>-<{'|'.join(WEIGHTINGS)}>[-<{'|'.join(METRICS)}>], repeatable "
        "(default: pseudolabel.members)."
    ),
)
@click.option(
    "--confidence", type=float, default=None, help="Winning vote share a member needs to be confident."
)
@click.option("--quorum", type=float, default=None, help="Share of members that must agree confidently.")
@click.option(
    "--kmeans/--no-kmeans", "use_kmeans", default=None, help="Require agreement with seeded KMeans."
)
@click.option(
    "--folds", type=int, default=None, help="KMeans folds of the accuracy estimate (0 = no estimate)."
)
@click.option(
    "--select/--no-select", "then_select", default=True, show_default=True, help="Build the shortlist too."
)
@_select_options
@seed_option
@json_option
@pass_state
def pseudolabel_command(
    state: CliState,
    members: tuple[str, ...],
    confidence: float | None,
    quorum: float | None,
    use_kmeans: bool | None,
    folds: int | None,
    then_select: bool,
    neighbours: int | None,
    budget: int | None,
    map_points: int | None,
    seed: int | None,
    as_json: bool,
) -> None:
    """Label the pool automatically where the kNN ensemble and seeded KMeans agree, then
    shortlist the problematic images and their neighbours for the crowd."""
    from iris.pseudolabel import stage
    from iris.report.embedding_map import embedding_map
    from iris.select import run as select

    with state.context(
        pseudolabel={
            "members": list(members) or None,
            "confidence": confidence,
            "quorum": quorum,
            "use_kmeans": use_kmeans,
            "estimate_folds": folds,
            "seed": seed,
        },
        select=_select_overrides(neighbours, budget, map_points),
    ) as ctx:
        report = stage.run(ctx)
        sel = select(ctx) if then_select else None
        map_path = embedding_map(ctx.workdir, ctx.settings, ctx.store) if then_select else None
    _echo(report, sel, map_path, as_json)


@click.command("select")
@_select_options
@json_option
@pass_state
def select_command(
    state: CliState, neighbours: int | None, budget: int | None, map_points: int | None, as_json: bool
) -> None:
    """Shortlist the problematic images and every image with one among its nearest
    neighbours (after `iris pseudolabel`)."""
    from iris.report.embedding_map import embedding_map
    from iris.select import run

    with state.context(select=_select_overrides(neighbours, budget, map_points)) as ctx:
        sel = run(ctx)
        map_path = embedding_map(ctx.workdir, ctx.settings, ctx.store)
    _echo(None, sel, map_path, as_json)


COMMANDS = [pseudolabel_command, select_command]
