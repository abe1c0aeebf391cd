"""The stage contract: every stage is ``run(ctx) -> StageReport``.

A stage module (``iris.data.ingest``, ``iris.embed.stage``, ``iris.pseudolabel.stage``,
``iris.select``, ``iris.crowd.stage``, ``iris.aggregate``, ``iris.propagate``,
``iris.train.loop``, ``iris.train.predict``) exposes one entry point::

    def run(ctx: StageContext) -> SomeReport: ...

where ``SomeReport`` is a dataclass deriving from :class:`StageReport`. The pipeline calls
the stages in order through that entry point, and so does every CLI command, with its
flag overrides already merged into ``ctx.settings``::

    with StageContext(workdir, settings) as ctx:
        report = run(ctx)
    print(report.to_json())

The context opens the vector store on first use and closes it on exit (a store handed in
by the caller stays the caller's to close). What a run is given besides settings (the
manifests of ``iris ingest``, ``--restart`` of ``iris train``, ``--out`` of
``iris predict``) travels in ``ctx.options``.

This module stays light (no numpy, polars or store engine at import): the CLI imports it
to start.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import click

if TYPE_CHECKING:
    from iris.config import Settings
    from iris.store.base import VectorStore
    from iris.workdir import Workdir

Echo = Callable[[str], None]


class StageReport:
    """Base of every stage's report: a dataclass of JSON-able values, turned into JSON one way."""

    def as_dict(self) -> dict[str, Any]:
        """The report's fields as plain JSON values (paths and other objects become strings)."""
        return report_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent)


def report_dict(report: Any) -> dict[str, Any]:
    """A dataclass report (or a mapping) as a dict of plain JSON values."""
    if report is None:
        return {}
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        data: Any = dataclasses.asdict(report)
    elif isinstance(report, Mapping):
        data = dict(report)
    else:
        raise TypeError(f"a stage report is a dataclass, got {type(report).__name__}")
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return result


class StageContext:
    """What every stage gets: the work directory, the settings, the store and an echo sink.

    Args:
        workdir: the work directory.
        settings: merged settings (defaults < iris.toml < environment < flags).
        store: an already open store to use (its opener closes it); None opens
            ``open_store(workdir, settings)`` on first use and closes it with the context.
        echo: where a stage's progress lines go (``click.echo`` by default).
        options: per-run inputs that are not settings, by stage: ``manifests`` (ingest),
            ``restart`` (train), ``out`` and ``probabilities`` (predict).
    """

    def __init__(
        self,
        workdir: Workdir,
        settings: Settings,
        *,
        store: VectorStore | None = None,
        echo: Echo = click.echo,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.settings = settings
        self.echo = echo
        self.options: Mapping[str, Any] = dict(options or {})
        self._given = store
        self._opened: VectorStore | None = None

    @property
    def store(self) -> VectorStore:
        """The vector store, opened on first use."""
        if self._given is not None:
            return self._given
        if self._opened is None:
            from iris.store import open_store

            self._opened = open_store(self.workdir, self.settings)
        return self._opened

    def close(self) -> None:
        """Close the store if this context opened it."""
        if self._opened is not None:
            opened, self._opened = self._opened, None
            opened.close()

    def __enter__(self) -> StageContext:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class Stage(Protocol):
    """A stage's entry point."""

    def __call__(self, ctx: StageContext) -> StageReport: ...
