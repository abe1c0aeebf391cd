"""``iris propagate``: build the final dataset, then label the rest of the pool by kNN."""

from __future__ import annotations

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state, seed_option


@click.command("propagate")
@click.option("--ks", default=None, help="Candidate k values, comma-separated (default from iris.toml).")
@click.option("--folds", type=click.IntRange(min=2), default=None, help="Cross-validation folds.")
@seed_option
@json_option
@pass_state
def propagate_command(
    state: CliState, ks: str | None, folds: int | None, seed: int | None, as_json: bool
) -> None:
    """Combine ground truth, crowd and automatic labels (gt > crowd > auto), pick kNN
    parameters by k-fold cross-validation, and label every remaining pool image.

    Writes tables/final_labels.parquet and tables/final_conflicts.parquet.
    """
    from iris.propagate import run

    with state.context(propagate={"ks": ks, "folds": folds, "seed": seed}) as ctx:
        report = run(ctx)
    if as_json:
        click.echo(report.to_json())
        return
    labeled = ", ".join(f"{origin} {n}" for origin, n in report.labeled.items())
    conflicts = ", ".join(f"{kind} {n}" for kind, n in report.conflicts.items()) or "none"
    click.echo(f"final labels: {labeled}; conflicts: {conflicts}")
    human = "" if report.cv_accuracy_human is None else f" (gt+crowd {report.cv_accuracy_human:.3f})"
    click.echo(
        f"chosen: k={report.k}, {report.weighting} weighting, {report.metric} metric; "
        f"{report.folds}-fold CV accuracy {report.cv_accuracy:.3f}{human}"
    )
    click.echo(
        f"propagated {report.propagated} images ({report.propagated_positive} positive)"
        + (f"; {report.not_in_store} not in the store (run `iris embed`)" if report.not_in_store else "")
        + f" in {report.seconds:.1f} s -> {report.final_labels}"
    )
    top = sorted(report.grid, key=lambda row: -float(row["accuracy"]))[:5]  # type: ignore[arg-type]
    echo_table(top, title="best candidates")


COMMANDS = [propagate_command]
