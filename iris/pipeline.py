"""Stage order, state and resume for ``iris run``.

Each stage is a library function from tables (and vectors) to tables. The pipeline runs
them in order and records each finished stage in ``WORK/state.json`` with its summary and
duration; a re-run skips finished stages. A stage interrupted half-way (even by SIGKILL)
is simply run again: every stage resumes from what it already wrote (ingest re-fetches
only missing images, embed embeds only ids missing from the store, the crowd campaign
never re-buys collected answers, training restarts from its last checkpoint).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from iris.config import Settings
from iris.errors import CrowdError, StageOrderError
from iris.store.base import VectorStore
from iris.workdir import Workdir

STATE_FILE = "state.json"


@dataclass
class RunContext:
    """What every stage gets: the work directory, settings and a lazily opened store."""

    workdir: Workdir
    settings: Settings
    manifests: dict[str, Any] = field(default_factory=dict)
    echo: Callable[[str], None] = click.echo
    _store: VectorStore | None = None

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            from iris.store import open_store

            self._store = open_store(self.workdir, self.settings)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


StageFn = Callable[[RunContext], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    doc: str


def _summary(report: Any) -> dict[str, Any]:
    """A stage report (dataclass or mapping) as a JSON-able dict."""
    if report is None:
        return {}
    if isinstance(report, dict):
        data = report
    elif hasattr(report, "__dataclass_fields__"):
        data = {name: getattr(report, name) for name in report.__dataclass_fields__}
    else:
        data = {"result": str(report)}
    return json.loads(json.dumps(data, default=str))


def _ingest(ctx: RunContext) -> dict[str, Any]:
    from iris.data.ingest import ingest

    m = ctx.manifests
    if not m.get("ground_truth"):
        raise StageOrderError("iris run needs manifests: pass --ground-truth, --pool and --test")
    return _summary(
        ingest(
            ctx.workdir,
            ctx.settings,
            ground_truth=Path(m["ground_truth"]),
            pool=[Path(p) for p in m.get("pool", [])],
            test=Path(m["test"]) if m.get("test") else None,
        )
    )


def _embed(ctx: RunContext) -> dict[str, Any]:
    from iris.embed.stage import embed

    return _summary(embed(ctx.workdir, ctx.settings, ctx.store))


def _pseudolabel(ctx: RunContext) -> dict[str, Any]:
    from iris.pseudolabel.stage import pseudolabel

    return _summary(pseudolabel(ctx.workdir, ctx.settings, ctx.store))


def _select(ctx: RunContext) -> dict[str, Any]:
    from iris.select import select

    return _summary(select(ctx.workdir, ctx.settings, ctx.store))


def _crowd(ctx: RunContext) -> dict[str, Any]:
    from iris.crowd.campaign import run_campaign

    report = run_campaign(ctx.workdir, ctx.settings)
    if report.state != "complete":
        # A real crowd takes hours: keep what was collected and let the user come back.
        raise CrowdError(
            f"the {report.backend} crowd campaign is {report.state}: {report.tasks_done}/{report.tasks} "
            "tasks have their answers; "
            + (f"{report.next_step}; " if report.next_step else "")
            + "run `iris run` again later to collect and go on"
        )
    if report.tasks_done < report.tasks:
        ctx.echo(
            f"[crowd] warning: only {report.tasks_done}/{report.tasks} tasks got their full overlap "
            "(the crowd ran out); the rest are labeled from what answers they have, or by propagation"
        )
    return _summary(report)


def _aggregate(ctx: RunContext) -> dict[str, Any]:
    from iris.aggregate import aggregate_workdir

    return _summary(aggregate_workdir(ctx.workdir, ctx.settings))


def _propagate(ctx: RunContext) -> dict[str, Any]:
    from iris.propagate import propagate

    return _summary(propagate(ctx.workdir, ctx.settings, ctx.store))


def _train(ctx: RunContext) -> dict[str, Any]:
    from iris.train.loop import train_workdir

    return _summary(train_workdir(ctx.workdir, ctx.settings, log=ctx.echo))


def _predict(ctx: RunContext) -> dict[str, Any]:
    from iris.train.predict import predict_workdir

    return _summary(predict_workdir(ctx.workdir, ctx.settings))


STAGES: tuple[Stage, ...] = (
    Stage("ingest", _ingest, "read manifests, download, validate, deduplicate"),
    Stage("embed", _embed, "fine-tune the backbone, export to ONNX, embed every image into Qdrant"),
    Stage("pseudolabel", _pseudolabel, "kNN ensemble + KMeans++ automatic labels"),
    Stage("select", _select, "problematic images and their neighbours: the crowd's shortlist"),
    Stage("crowd", _crowd, "run the crowd campaign and collect answers"),
    Stage("aggregate", _aggregate, "aggregate the answers into labels with confidences"),
    Stage("propagate", _propagate, "final dataset, kNN propagation to the rest of the pool"),
    Stage("train", _train, "train the final classifier"),
    Stage("predict", _predict, "predict the test set into a submission file"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


class RunState:
    """``state.json``: finished stages with their summaries and seconds, plus the manifests."""

    def __init__(self, workdir: Workdir) -> None:
        self.path = workdir.root / STATE_FILE
        self.data: dict[str, Any] = {"stages": {}, "manifests": {}}
        if self.path.exists():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.path)

    def done(self, stage: str) -> bool:
        return bool(self.data["stages"].get(stage, {}).get("done"))

    def finish(self, stage: str, summary: dict[str, Any], seconds: float) -> None:
        self.data["stages"][stage] = {"done": True, "seconds": round(seconds, 2), "summary": summary}
        self.save()

    def forget(self, stages: Sequence[str]) -> None:
        for stage in stages:
            self.data["stages"].pop(stage, None)
        self.save()


def run_pipeline(
    workdir: Workdir,
    settings: Settings,
    *,
    manifests: dict[str, Any] | None = None,
    until: str | None = None,
    redo: Sequence[str] = (),
    echo: Callable[[str], None] = click.echo,
) -> RunState:
    """Run every stage in order, skipping finished ones.

    Args:
        manifests: ``{"ground_truth": path, "pool": [paths], "test": path}``; remembered in
            ``state.json`` so a re-run needs none.
        until: stop after this stage.
        redo: stages to run again even if finished (their later stages are re-run too).
    """
    state = RunState(workdir)
    if manifests:
        state.data["manifests"] = {k: v for k, v in manifests.items() if v}
        state.save()
    if redo:
        first = min(STAGE_NAMES.index(name) for name in redo)
        state.forget(STAGE_NAMES[first:])
    ctx = RunContext(workdir=workdir, settings=settings, manifests=state.data.get("manifests", {}), echo=echo)
    try:
        for stage in STAGES:
            if state.done(stage.name):
                echo(f"[{stage.name}] done already, skipped")
            else:
                echo(f"[{stage.name}] {stage.doc}")
                start = time.perf_counter()
                summary = stage.run(ctx)
                state.finish(stage.name, summary, time.perf_counter() - start)
                echo(f"[{stage.name}] finished in {time.perf_counter() - start:.1f} s")
            if stage.name == until:
                break
    finally:
        ctx.close()
    return state
