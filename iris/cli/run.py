"""``iris run`` (every stage in order, resumable) and ``iris demo``."""

from __future__ import annotations

from pathlib import Path

import click

from iris.cli._common import CliState, column_options, echo_table, pass_state
from iris.pipeline import STAGE_NAMES, run_pipeline
from iris.report.summary import draw_pictures, stage_rows, write_report

_stage = click.Choice(STAGE_NAMES)


@click.command("run")
@click.option("--ground-truth", type=click.Path(dir_okay=False, path_type=Path), help="Labeled manifest.")
@click.option(
    "--pool", multiple=True, type=click.Path(dir_okay=False, path_type=Path), help="Unlabeled manifest(s)."
)
@click.option("--test", type=click.Path(dir_okay=False, path_type=Path), help="Test manifest.")
@click.option("--until", type=_stage, help="Stop after this stage.")
@click.option("--redo", type=_stage, multiple=True, help="Run this stage (and the later ones) again.")
@column_options
@pass_state
def run_command(
    state: CliState,
    ground_truth: Path | None,
    pool: tuple[Path, ...],
    test: Path | None,
    until: str | None,
    redo: tuple[str, ...],
    **columns: str | None,
) -> None:
    """Run every stage in order, skipping finished ones and resuming an interrupted one.

    Manifests are remembered in state.json, so a re-run needs none.
    """
    manifests = None
    if ground_truth or pool or test:
        manifests = {
            "ground_truth": str(ground_truth.resolve()) if ground_truth else None,
            "pool": [str(p.resolve()) for p in pool],
            "test": str(test.resolve()) if test else None,
        }
    workdir = state.workdir
    settings = state.settings(task=dict(columns))
    run_state = run_pipeline(workdir, settings, manifests=manifests, until=until, redo=redo)
    draw_pictures(workdir, settings, run_state)
    echo_table(stage_rows(run_state), title="\nstages")
    report = write_report(workdir, run_state, {})
    click.echo(f"\nreport: {report}")


@click.command("demo")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("iris-demo"),
    show_default=True,
    help="Where the data and the work directory go.",
)
@click.option("--limit", type=int, default=None, help="Use only this many training images (quick look).")
@click.option("--n-labeled", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fast", is_flag=True, help="Fewer epochs: a quicker, rougher run.")
def demo_command(root: Path, limit: int | None, n_labeled: int, seed: int, fast: bool) -> None:
    """Build the Fashion-MNIST benchmark (T-shirt/top vs Shirt), run the whole pipeline
    with the embedded Qdrant and a simulated crowd, and score it against the answer key."""
    from iris.config import load_settings
    from iris.demo import run_demo

    workdir, run_state, figures = run_demo(root, limit=limit, n_labeled=n_labeled, seed=seed, fast=fast)
    draw_pictures(workdir, load_settings(workdir.root), run_state)
    echo_table(stage_rows(run_state), title="\nstages")
    echo_table([{"figure": k, "value": v} for k, v in figures.items()], title="\nsummary")
    report = write_report(workdir, run_state, figures)
    click.echo(f"\nreport: {report}")


COMMANDS = [run_command, demo_command]
