"""``iris aggregate``: answers → one label per task, with confidences and worker skills."""

from __future__ import annotations

import click

from iris.cli._common import CliState, LazyChoice, echo_table, json_option, pass_state


@click.command("aggregate")
@click.option(
    "--method",
    type=LazyChoice("iris.crowd.aggregation", "AGGREGATORS", metavar="METHOD"),
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
    from iris.aggregate import run

    with state.context(aggregate={"method": method, "use_honeypots": honeypots}) as ctx:
        report = run(ctx)
    if as_json:
        click.echo(report.to_json())
        return
    rows = [{"what": k.replace("_", " "), "value": v} for k, v in report.as_dict().items()]
    echo_table(rows, title="aggregated")
    click.echo(f"\nwrote {ctx.workdir.table('aggregated')} and {ctx.workdir.table('workers')}")


COMMANDS = [aggregate_command]
