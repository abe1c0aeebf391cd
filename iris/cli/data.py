"""``iris data``: look at ingested data; build benchmark datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state


@click.group("data")
def data_group() -> None:
    """Inspect ingested data and build benchmark datasets."""


@data_group.command("stats")
@json_option
@pass_state
def stats_command(state: CliState, as_json: bool) -> None:
    """Counts per split and label, image sizes and rejects; drawn to reports/data_stats.png."""
    from iris.data.stats import data_stats

    stats, png = data_stats(state.workdir, task=state.settings().task)
    if as_json:
        click.echo(
            json.dumps({"counts": stats.counts, "sizes": stats.sizes, "rejects": stats.rejects}, indent=2)
        )
        return
    echo_table(stats.counts, title="images per split and label")
    click.echo()
    echo_table(stats.sizes, title="image sizes (px)")
    click.echo()
    echo_table(stats.rejects, title="rejects by reason")
    click.echo(f"\nplot: {png}")


@data_group.command("fashion-mnist")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--positive", type=int, default=6, show_default=True, help="Positive class (6 = Shirt).")
@click.option("--negative", type=int, default=0, show_default=True, help="Negative class (0 = T-shirt/top).")
@click.option("--n-labeled", type=int, default=200, show_default=True, help="Ground-truth size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which images are labeled.")
@click.option("--limit", type=int, default=None, help="Keep only this many train images (quick runs).")
def fashion_mnist_command(
    out: Path, positive: int, negative: int, n_labeled: int, seed: int, limit: int | None
) -> None:
    """Write the Fashion-MNIST binary task to OUT as PNGs and contest-shaped manifests."""
    from iris.data.fashion_mnist import build

    files = build(out, positive=positive, negative=negative, n_labeled=n_labeled, seed=seed, limit=limit)
    click.echo(
        f"{files.positive_name} (positive) vs {files.negative_name} (negative): "
        f"{files.counts['gt']} labeled, {files.counts['pool']} pool, {files.counts['test']} test in {out}"
    )
    click.echo(f"answer key (benchmarks only): {files.answer_key}")
    click.echo("next:")
    click.echo("  iris init WORK")
    click.echo(f"  {files.ingest_command()}")
    click.echo(
        f'  (class names for reports and the crowd: in WORK/iris.toml [task] set positive_name = "'
        f'{files.positive_name}" and negative_name = "{files.negative_name}")'
    )


COMMANDS = [data_group]
