"""``iris predict``: export the final model to ONNX and write the submission file."""

from __future__ import annotations

from pathlib import Path

import click

from iris.cli._common import CliState, json_option, pass_state


@click.command("predict")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Submission file (default WORK/submission.csv; .tsv writes tabs).",
)
@click.option("--probabilities", is_flag=True, help="Add a probability column (of the positive class).")
@json_option
@pass_state
def predict_command(state: CliState, out: Path | None, probabilities: bool, as_json: bool) -> None:
    """Run the final model (ONNX Runtime) over the test manifest and write one row per test
    row, in the input's format (e.g. downloadUrl,is_conifer with TRUE/FALSE)."""
    from iris.train.predict import run

    with state.context(options={"out": out, "probabilities": probabilities}) as ctx:
        report = run(ctx)
    if as_json:
        click.echo(report.to_json())
        return
    speed = "" if report.images_per_second is None else f" at {report.images_per_second:.0f} images/s"
    click.echo(
        f"{report.rows} rows -> {report.submission} ({report.positive} positive; "
        f"{report.images} images predicted{speed}; parity {report.parity_max_abs_diff:.1e})"
    )
    if report.fallback:
        click.echo(f"{report.fallback} row(s) had no ingested image and got the majority class (see rejects)")


COMMANDS = [predict_command]
