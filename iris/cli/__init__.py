"""The ``iris`` command line.

Every module in this package (not starting with ``_``) contributes ``COMMANDS``, a list
of click commands or groups; they are discovered here, so adding a command is adding a
module. Commands stay thin: parse options, call one library function, write, report.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import click

from iris.cli._common import ARGV_KEY, CliState
from iris.errors import IrisError


class IrisGroup(click.Group):
    """A click group that turns :class:`IrisError` into one line and exit status 2."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        argv = list(args)  # parsing consumes them; the lock file records them
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta[ARGV_KEY] = argv
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IrisError as exc:
            state = ctx.find_object(CliState)
            if state is not None and state.debug:
                raise
            click.echo(f"iris: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=IrisGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workdir",
    "-w",
    type=click.Path(file_okay=False, path_type=__import__("pathlib").Path),
    envvar="IRIS_WORKDIR",
    help="Work directory (default: IRIS_WORKDIR or the current directory).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="iris-labeling", prog_name="iris")
@click.pass_context
def main(ctx: click.Context, workdir: Any, debug: bool) -> None:
    """iris: label a large image pool for binary classification with embeddings,
    kNN pseudo-labels, Qdrant and a small, well-controlled crowd."""
    ctx.obj = CliState(workdir_path=workdir, debug=debug)


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_register()
