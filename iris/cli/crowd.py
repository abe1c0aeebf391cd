"""``iris crowd plan | launch | status | collect | stop | report | serve | invite``: the crowd campaign."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from iris.cli._common import CliState, LazyChoice, echo_table, json_option, pass_state
from iris.contract import report_dict

if TYPE_CHECKING:  # the campaign imports polars and numpy: keep them out of the CLI's start-up
    from iris.crowd.backends.base import CampaignStatus

F = TypeVar("F", bound=Callable[..., Any])


def _backend_options(func: F) -> F:
    func = click.option(
        "--answer-key",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Simulated crowd: CSV of true labels its virtual people know.",
    )(func)
    return click.option(
        "--backend",
        type=LazyChoice("iris.crowd.backends.base", "BACKENDS", metavar="BACKEND"),
        default=None,
        help="Crowd backend (default from iris.toml).",
    )(func)  # type: ignore[return-value]


def _settings(state: CliState, backend: str | None = None, answer_key: Path | None = None) -> Any:
    key = str(answer_key.resolve()) if answer_key else None
    return state.settings(crowd={"backend": backend, "answer_key": key})


def _echo_status(st: CampaignStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report_dict(st), indent=2))
        return
    rows: list[dict[str, Any]] = [
        {"what": "backend", "value": st.backend},
        {"what": "state", "value": st.state},
        {"what": "tasks done / total", "value": f"{st.tasks_done} / {st.tasks_total}"},
        {"what": "pages", "value": st.pages},
        {"what": "answers", "value": st.answers},
        {"what": "workers", "value": st.workers},
        {"what": "banned", "value": st.banned},
        {"what": "cost", "value": f"{st.cost:.2f}"},
    ]
    echo_table(rows, title="crowd campaign")


@click.group("crowd")
def crowd_group() -> None:
    """The crowd campaign: training, exam, pages with honeypots, quality control."""


@crowd_group.command("plan")
@_backend_options
@json_option
@pass_state
def plan_command(state: CliState, backend: str | None, answer_key: Path | None, as_json: bool) -> None:
    """Show what a launch would create and what it would cost; changes nothing."""
    from iris.crowd import campaign

    plan = campaign.plan(state.workdir, _settings(state, backend, answer_key))
    if as_json:
        click.echo(json.dumps(report_dict(plan), indent=2))
        return
    rows: list[dict[str, Any]] = [
        {"what": "tasks", "value": plan.tasks},
        {"what": "training / exam / honeypots", "value": f"{plan.training} / {plan.exam} / {plan.honeypots}"},
        {"what": "pages", "value": plan.pages},
        {"what": "answers bought", "value": plan.answers},
        {"what": "cost", "value": f"{plan.cost:.2f}"},
    ]
    if plan.max_pages_per_worker is not None:
        rows.append({"what": "pages per worker (at most)", "value": plan.max_pages_per_worker})
    echo_table(rows, title=f"plan ({plan.backend})")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("\nwould create:")
    for line in plan.objects:
        click.echo(f"  - {line}")


@crowd_group.command("launch")
@_backend_options
@click.option(
    "--restart",
    is_flag=True,
    help="End the campaign launched before (on Toloka: close and archive its pools and project), "
    "forget the campaign state in WORK/crowd and launch afresh.",
)
@json_option
@pass_state
def launch_command(
    state: CliState, backend: str | None, answer_key: Path | None, restart: bool, as_json: bool
) -> None:
    """Launch the campaign, or resume the one already launched (never buys anything twice)."""
    from iris.crowd import campaign

    st = campaign.launch(state.workdir, _settings(state, backend, answer_key), restart=restart)
    _echo_status(st, as_json)


@crowd_group.command("status")
@json_option
@pass_state
def status_command(state: CliState, as_json: bool) -> None:
    """Progress of the campaign."""
    from iris.crowd import campaign

    _echo_status(campaign.status(state.workdir, state.settings()), as_json)


@crowd_group.command("collect")
@json_option
@pass_state
def collect_command(state: CliState, as_json: bool) -> None:
    """Write the answers collected so far to tables/answers.parquet."""
    from iris.crowd import campaign

    workdir = state.workdir
    collected = campaign.collect(workdir, state.settings())
    a = collected.answers
    summary = {
        "answers": a.height,
        "honeypot answers": int(a["is_honeypot"].sum()),
        "pages": int(a["page"].n_unique()),
        "workers": int(a["worker"].n_unique()),
        "banned": collected.bans.height,
        "table": str(workdir.table("answers")),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    echo_table([{"what": k, "value": v} for k, v in summary.items()], title="collected")


@crowd_group.command("stop")
@json_option
@pass_state
def stop_command(state: CliState, as_json: bool) -> None:
    """Close the campaign's pools."""
    from iris.crowd import campaign

    _echo_status(campaign.stop(state.workdir, state.settings()), as_json)


@crowd_group.command("report")
@json_option
@pass_state
def report_command(state: CliState, as_json: bool) -> None:
    """Cost, answers, bans, agreement; draws reports/worker_skills.png."""
    from iris.report.crowd import crowd_report

    summary, png = crowd_report(state.workdir, state.settings())
    if as_json:
        click.echo(json.dumps({**report_dict(summary), "png": str(png)}, indent=2))
        return
    bans = ", ".join(f"{k} {v}" for k, v in summary.bans_by_rule.items()) or "none"
    rows: list[dict[str, Any]] = [
        {"what": "backend / state", "value": f"{summary.backend} / {summary.state}"},
        {"what": "cost", "value": f"{summary.cost:.2f}"},
        {"what": "tasks done / total", "value": f"{summary.tasks_done} / {summary.tasks}"},
        {"what": "pages", "value": summary.pages},
        {"what": "answers (honeypot)", "value": f"{summary.answers} ({summary.honeypot_answers})"},
        {"what": "workers", "value": summary.workers},
        {"what": "banned", "value": f"{summary.banned} ({bans})"},
        {"what": "unanimous tasks", "value": f"{summary.unanimous:.1%}"},
        {"what": "agreement with majority", "value": f"{summary.majority_agreement:.1%}"},
        {
            "what": "honeypot accuracy",
            "value": "-" if summary.honeypot_accuracy is None else f"{summary.honeypot_accuracy:.1%}",
        },
        {"what": "worker skills from", "value": summary.skill_source},
    ]
    echo_table(rows, title="crowd report")
    click.echo(f"\nworker skills: {png}")


@crowd_group.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 127.0.0.1 means only this machine (0.0.0.0: every interface).",
)
@click.option(
    "--port", default=8080, show_default=True, type=int, help="Port to listen on (0: any free one)."
)
@pass_state
def serve_command(state: CliState, host: str, port: int) -> None:
    """Serve the self-hosted labeler for the campaign launched with `--backend web`."""
    from iris.crowd.web_server import bind, describe, make_server

    settings = _settings(state, "web")
    server = make_server(state.workdir, settings)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for line in describe(state.workdir, settings, host, sock.getsockname()[1]):
        click.echo(line)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it shut down on
        server.run(sockets=[sock])
    click.echo("labeler stopped; every saved answer is kept")


@crowd_group.command("invite")
@click.argument("n", type=int)
@click.option(
    "--base-url", default=None, help="Address people reach the labeler at (default: crowd.web_url)."
)
@json_option
@pass_state
def invite_command(state: CliState, n: int, base_url: str | None, as_json: bool) -> None:
    """Print N invitation links for the web labeler, one per person (each is their sign-in)."""
    from iris.crowd.web_server import invite_links

    links = invite_links(state.workdir, _settings(state, "web"), n, base_url=base_url)
    if as_json:
        click.echo(json.dumps(links, indent=2))
        return
    for link in links:
        click.echo(link)
    click.echo(
        f"{n} invitation link(s): send one to each person; opening it again signs them back in.", err=True
    )


COMMANDS = [crowd_group]
