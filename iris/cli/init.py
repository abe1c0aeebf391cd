"""``iris init``: create a work directory."""

from __future__ import annotations

from pathlib import Path

import click

from iris.cli._common import lock_workdir
from iris.workdir import Workdir, init_workdir


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing iris.toml.")
def init_command(directory: Path, force: bool) -> None:
    """Create DIRECTORY as a work directory with an iris.toml of all settings.

    The crowd stage defaults to the self-hosted web labeler (``crowd.backend = "web"``): real
    people, no answer key needed. ``iris demo`` and the benchmarks use the simulated crowd.
    """
    from dataclasses import replace

    from iris.config import Settings

    base = Settings()
    settings = replace(base, crowd=replace(base.crowd, backend="web"))
    lock_workdir(Workdir(directory.resolve()))  # --force must not rewrite the settings of a running command
    workdir = init_workdir(directory, settings=settings, force=force)
    click.echo(f"initialised {workdir.root} (settings in {workdir.config})")


COMMANDS = [init_command]
