"""``iris ingest``: manifests in, images and rejects tables out."""

from __future__ import annotations

from pathlib import Path

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("ingest")
@click.option("--ground-truth", "ground_truth", type=_FILE, help="Labeled manifest (TSV, CSV or XLSX).")
@click.option("--pool", type=_FILE, multiple=True, help="Unlabeled manifest; repeat for several files.")
@click.option("--test", type=_FILE, help="Test manifest.")
@click.option("--source-column", help="Column naming the image (default [task] source_column).")
@click.option("--label-column", help="Ground-truth label column (default [task] label_column).")
@click.option("--positive", help="Label cell value of the positive class (default [task] positive).")
@click.option("--negative", help="Label cell value of the negative class (default [task] negative).")
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
    source_column: str | None,
    label_column: str | None,
    positive: str | None,
    negative: str | None,
    concurrency: int | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Download, validate and deduplicate the images named by the manifests.

    Splits left out of a re-run keep the manifests of the last run; images already in
    the work directory are not fetched again.
    """
    from iris.data.ingest import run

    manifests = {"ground_truth": ground_truth, "pool": list(pool), "test": test}
    with state.context(
        options={"manifests": manifests},
        task={
            "source_column": source_column,
            "label_column": label_column,
            "positive": positive,
            "negative": negative,
        },
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
