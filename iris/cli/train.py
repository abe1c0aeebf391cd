"""``iris train``: train the final classifier on the final labels (resumes from last.pt)."""

from __future__ import annotations

import click

from iris.cli._common import CliState, LazyChoice, backbone_options, json_option, pass_state, seed_option


@click.command("train")
@backbone_options
@click.option(
    "--head", type=LazyChoice("iris.train.heads", "HEADS"), default=None, help="Classification head."
)
@click.option("--image-size", type=click.IntRange(min=16), default=None, help="Input side in pixels.")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Epochs in all (a resume continues)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option(
    "--schedule",
    type=LazyChoice("iris.train.schedule", "SCHEDULES"),
    default=None,
    help="Learning-rate schedule.",
)
@click.option("--warmup-steps", type=click.IntRange(min=1), default=None)
@click.option(
    "--lr-factor", type=click.FloatRange(min=0, min_open=True), default=None, help="Schedule scale."
)
@click.option(
    "--patience", type=click.IntRange(min=1), default=None, help="Early-stopping patience (epochs)."
)
@click.option(
    "--freeze-backbone/--finetune-backbone", default=None, help="Train the head only, on cached features."
)
@click.option(
    "--confidence-weighting/--no-confidence-weighting", default=None, help="Weight losses by confidence."
)
@click.option("--device", default=None, help="auto, cpu or cuda[:N].")
@click.option("--restart", is_flag=True, help="Ignore models/classifier/last.pt and start again.")
@seed_option
@json_option
@pass_state
def train_command(state: CliState, restart: bool, as_json: bool, **options: object) -> None:
    """Train the final classifier on tables/final_labels.parquet.

    Checkpoints every epoch (models/classifier/last.pt, best.pt); an interrupted run
    resumes where it stopped. Metrics per epoch are printed and drawn in reports/training.png.
    """
    from iris.report.training import TrainingPlot
    from iris.train.loop import run

    workdir = state.workdir
    hook = TrainingPlot(workdir.reports / "training.png")
    run_options = {"restart": restart, "on_epoch": hook}
    with state.context(options=run_options, quiet=as_json, train=dict(options)) as ctx:
        result = run(ctx)
    if as_json:
        click.echo(result.to_json())
        return
    accuracy = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
    per_epoch = "" if result.seconds_per_epoch is None else f", {result.seconds_per_epoch:.1f} s/epoch"
    click.echo(
        f"best epoch {result.best_epoch} of {result.epochs}: validation accuracy {accuracy} "
        f"on {result.val_images} images ({result.train_images} for training, {result.device}{per_epoch})"
    )
    click.echo(f"model {result.checkpoint}; plot {result.plot}")


COMMANDS = [train_command]
