"""``iris embed``: fine-tune the backbone, export it to ONNX and embed every image into the store."""

from __future__ import annotations

import click

from iris.cli._common import CliState, backbone_options, json_option, pass_state


@click.command("embed")
@backbone_options
@click.option(
    "--finetune-epochs", type=click.IntRange(min=0), default=None, help="0 keeps frozen ImageNet features."
)
@click.option("--image-size", type=click.IntRange(min=16), default=None, help="Input side in pixels.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per inference batch.")
@click.option(
    "--device",
    default=None,
    help="ONNX Runtime device: auto (CUDA when onnxruntime-gpu offers it, else CPU), cpu, cuda[:N].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="Run the encoder here (local) or as Ray Data actors (ray; RAY_ADDRESS names a cluster).",
)
@json_option
@pass_state
def embed_command(
    state: CliState,
    backbone: str | None,
    weights: str | None,
    finetune_epochs: int | None,
    image_size: int | None,
    batch_size: int | None,
    device: str | None,
    executor: str | None,
    as_json: bool,
) -> None:
    """Fine-tune on the ground truth, export to ONNX and embed every image into the vector store.

    Re-running keeps an up-to-date model and embeds only images not embedded yet.
    """
    from iris.embed.stage import run

    overrides = {
        "backbone": backbone,
        "weights": weights,
        "finetune_epochs": finetune_epochs,
        "image_size": image_size,
        "batch_size": batch_size,
        "device": device,
        "executor": executor,
    }
    with state.context(embed=overrides) as ctx:
        report = run(ctx)
    if as_json:
        click.echo(report.to_json())
        return
    model = "kept (settings unchanged)" if report.model_reused else "built"
    click.echo(f"model: {report.backbone} at {report.image_size}px, {report.dim}-d, {model}")
    if report.finetune_epochs == 0:
        click.echo("fine-tune: none (frozen features)")
    elif report.heldout_accuracy is None:
        click.echo(
            f"fine-tune: {report.finetune_epochs} epochs on {report.train_size} images (no held-out fold)"
        )
    else:
        click.echo(
            f"fine-tune: {report.finetune_epochs} epochs on {report.train_size} images, "
            f"held-out accuracy {report.heldout_accuracy:.3f} ({report.heldout_size} images)"
        )
    click.echo(
        f"parity torch vs ONNX Runtime: max abs diff {report.parity_max_abs_diff:.2e} "
        f"on {report.parity_images} images"
    )
    rate = f" at {report.images_per_second:.0f} images/s on {report.provider}" if report.embedded else ""
    click.echo(
        f"embedded {report.embedded} images ({report.already_embedded} already in the store, "
        f"{report.total} in all){rate}"
    )


COMMANDS = [embed_command]
