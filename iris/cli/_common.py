"""Shared CLI plumbing: the state object and option decorators written once."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from iris.config import Settings, load_settings
from iris.contract import StageContext
from iris.workdir import Workdir, find_workdir

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    workdir_path: Path | None = None
    debug: bool = False
    _workdir: Workdir | None = field(default=None, repr=False)

    @property
    def workdir(self) -> Workdir:
        if self._workdir is None:
            self._workdir = find_workdir(self.workdir_path)
        return self._workdir

    def settings(self, **overrides: dict[str, Any]) -> Settings:
        """The work directory's settings with the command's flags on top, checked; a bad value
        names the flag that set it, and warnings go to stderr as one line each."""
        return load_settings(self.workdir.root, overrides=overrides, flags=_command_flags(), warn=_warn_line)

    def context(
        self, *, options: dict[str, Any] | None = None, quiet: bool = False, **overrides: dict[str, Any]
    ) -> StageContext:
        """A stage context with the command's flag overrides merged into the settings.

        Use it as ``with state.context(section={...}) as ctx: report = run(ctx)``; the
        store is opened on first use and closed on the way out.

        Args:
            options: per-run inputs that are not settings (see :class:`StageContext`).
            quiet: drop the stage's progress lines (``--json`` prints only the JSON).
        """
        return StageContext(
            self.workdir,
            self.settings(**overrides),
            echo=_silent if quiet else click.echo,
            options=options,
        )


def _command_flags() -> dict[str, str]:
    """``{parameter name: "--flag"}`` of the running command."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    return {
        p.name: max(p.opts, key=len) for p in ctx.command.params if isinstance(p, click.Option) and p.name
    }


def _warn_line(message: str) -> None:
    click.echo(f"iris: warning: {message}", err=True)


def _silent(_line: str) -> None:
    """An echo sink that drops what it is given."""


pass_state = click.make_pass_decorator(CliState, ensure=True)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)  # type: ignore[return-value]


def backbone_options(func: F) -> F:
    """``--backbone`` and ``--weights``, shared by ``iris embed`` and ``iris train``."""
    func = click.option("--weights", default=None, help="imagenet, none, or a path to a state-dict file.")(
        func
    )
    return click.option(  # type: ignore[return-value]
        "--backbone",
        type=LazyChoice("iris.embed.backbones", "BACKBONES"),
        default=None,
        help="Backbone (default from iris.toml).",
    )(func)


_COLUMN_FLAGS = (
    ("--source-column", "source_column", "Column naming the image"),
    ("--label-column", "label_column", "Ground-truth label column"),
    ("--positive", "positive", "Label cell value of the positive class"),
    ("--negative", "negative", "Label cell value of the negative class"),
)


def column_options(func: F) -> F:
    """``--source-column``, ``--label-column``, ``--positive``, ``--negative``: the ``[task]``
    settings naming the manifests' columns and label values, shared by ``iris ingest`` and
    ``iris run``. The command takes them as ``**columns`` and passes them on as the
    ``task`` overrides (a flag not given is ``None``, which the settings ignore)."""
    decorated: Any = func
    for flag, key, text in reversed(_COLUMN_FLAGS):
        decorated = click.option(flag, key, default=None, help=f"{text} (default [task] {key}).")(decorated)
    return decorated  # type: ignore[no-any-return]


def seed_option(func: F) -> F:
    return click.option("--seed", type=int, default=None, help="Random seed (default from iris.toml).")(func)  # type: ignore[return-value]


def echo_table(rows: list[dict[str, Any]], *, title: str | None = None) -> None:
    """Print rows as an aligned text table."""
    if title:
        click.echo(title)
    if not rows:
        click.echo("(none)")
        return
    headers = list(rows[0].keys())

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    cells = [[fmt(row.get(h)) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


class LazyChoice(click.ParamType):
    """A choice among a registry's names, imported only when the option is used.

    Registries of backbones, heads or aggregators live next to heavy libraries (torch,
    crowd-kit); importing them while the CLI starts would make even ``iris --help`` slow.
    """

    name = "choice"

    def __init__(self, module: str, attribute: str, *, metavar: str = "NAME") -> None:
        self.module = module
        self.attribute = attribute
        self.metavar = metavar

    def choices(self) -> list[str]:
        return sorted(getattr(importlib.import_module(self.module), self.attribute))

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        choices = self.choices()
        if value not in choices:
            self.fail(f"{value!r} is not one of {', '.join(choices)}", param, ctx)
        return value
