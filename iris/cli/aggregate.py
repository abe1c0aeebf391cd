"""``iris aggregate``: answers → one label per task, with confidences and worker skills."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from iris.cli._common import CliState, LazyChoice, echo_table, json_option, pass_state


@click.command("aggregate")
@click.option(
    "--method",
    type=LazyChoice("iris.aggregate", "AGGREGATORS", metavar="METHOD"),
    default=None,
    help="Aggregation method (default from iris.toml: aggregate.method).",
)
@click.option(
    "--honeypots/--no-honeypots",
    default=None,
    help="Feed honeypot answers (as gold for Dawid-Skene) to the aggregator.",
)
@json_option
@pass_state
def aggregate_command(state: CliState, method: str | None, honeypots: bool | None, as_json: bool) -> None:
    """Aggregate tables/answers into tables/aggregated and tables/workers."""
    from iris.aggregate import aggregate_workdir

    workdir = state.workdir
    settings = state.settings(aggregate={"method": method, "use_honeypots": honeypots})
    report = aggregate_workdir(workdir, settings)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
        return
    rows = [{"what": k.replace("_", " "), "value": v} for k, v in asdict(report).items()]
    echo_table(rows, title="aggregated")
    click.echo(f"\nwrote {workdir.table('aggregated')} and {workdir.table('workers')}")


COMMANDS = [aggregate_command]
