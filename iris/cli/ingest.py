"""``iris ingest``: manifests in, images and rejects tables out."""

from __future__ import annotations

from pathlib import Path

import click

from iris.cli._common import CliState, column_options, echo_table, json_option, pass_state

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("ingest")
@click.option("--ground-truth", "ground_truth", type=_FILE, help="Labeled manifest (TSV, CSV or XLSX).")
@click.option("--pool", type=_FILE, multiple=True, help="Unlabeled manifest; repeat for several files.")
@click.option("--test", type=_FILE, help="Test manifest.")
@column_options
@click.option("--concurrency", type=int, help="Simultaneous downloads (default [ingest] concurrency).")
@click.option(
    "--workers", type=int, help="Decoding: 0 = a thread per core, N = N processes (default [ingest] workers)."
)
@json_option
@pass_state
def ingest_command(
    state: CliState,
    ground_truth: Path | None,
    pool: tuple[Path, ...],
    test: Path | None,
    concurrency: int | None,
    workers: int | None,
    as_json: bool,
    **columns: str | None,
) -> None:
    """Download, validate and deduplicate the images named by the manifests.

    Splits left out of a re-run keep the manifests of the last run; images already in
    the work directory are not fetched again.
    """
    from iris.data.ingest import run

    manifests = {"ground_truth": ground_truth, "pool": list(pool), "test": test}
    with state.context(
        options={"manifests": manifests},
        quiet=as_json,
        task=dict(columns),
        ingest={"concurrency": concurrency, "workers": workers},
    ) as ctx:
        report = run(ctx)
    if as_json:
        click.echo(report.to_json())
        return
    echo_table(report.rows(), title="images")
    click.echo()
    echo_table([{"reason": r, "rows": n} for r, n in report.rejects.items()], title="rejects")
    click.echo(
        f"\n{report.processed} image(s) fetched and checked, {report.reused} already present, "
        f"{report.seconds:.1f} s; tables in {state.workdir.tables}"
    )


COMMANDS = [ingest_command]
