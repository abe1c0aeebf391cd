"""Stage order, state and resume for ``iris run``.

Each stage is a module with ``run(ctx) -> StageReport`` (:mod:`iris.contract`), from
tables (and vectors) to tables; :data:`STAGES` lists them in order. The pipeline runs
them and records each finished stage in ``WORK/state.json`` with its summary and
duration; a re-run skips finished stages. A stage interrupted half-way (even by SIGKILL)
is simply run again: every stage resumes from what it already wrote (ingest re-fetches
only missing images, embed embeds only ids missing from the store, the crowd campaign
never re-buys collected answers, training restarts from its last checkpoint).
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from iris.config import Settings
from iris.contract import Echo, StageContext, StageReport
from iris.errors import StageOrderError, WorkdirError
from iris.preflight import preflight
from iris.workdir import Workdir

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Stage:
    """A stage of ``iris run``: its name, the module whose ``run(ctx)`` it is, and what it does."""

    name: str
    module: str
    doc: str

    def run(self, ctx: StageContext) -> StageReport:
        """Import the stage's module (only now: stages pull in heavy libraries) and run it."""
        report: StageReport = importlib.import_module(self.module).run(ctx)
        return report


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "iris.data.ingest", "read manifests, download, validate, deduplicate"),
    Stage(
        "embed", "iris.embed.stage", "fine-tune the backbone, export to ONNX, embed every image into Qdrant"
    ),
    Stage("pseudolabel", "iris.pseudolabel.stage", "kNN ensemble + KMeans++ automatic labels"),
    Stage("select", "iris.select", "problematic images and their neighbours: the crowd's shortlist"),
    Stage("crowd", "iris.crowd.stage", "run the crowd campaign and collect answers"),
    Stage("aggregate", "iris.aggregate", "aggregate the answers into labels with confidences"),
    Stage("propagate", "iris.propagate", "final dataset, kNN propagation to the rest of the pool"),
    Stage("train", "iris.train.loop", "train the final classifier"),
    Stage("predict", "iris.train.predict", "predict the test set into a submission file"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


class RunState:
    """``state.json``: finished stages with their summaries and seconds, plus the manifests."""

    def __init__(self, workdir: Workdir) -> None:
        self.path = workdir.root / STATE_FILE
        self.data: dict[str, Any] = {"stages": {}, "manifests": {}}
        if self.path.exists():
            self.data = _read_state(self.path)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            out.write(json.dumps(self.data, indent=2, default=str))
            out.flush()
            # Durable before the rename: after a power cut state.json is the old one or the
            # new one, never an empty file.
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    def done(self, stage: str) -> bool:
        return bool(self.data["stages"].get(stage, {}).get("done"))

    def to_run(self, until: str | None = None) -> tuple[str, ...]:
        """The stages not finished yet, in order, up to ``until`` (inclusive)."""
        last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
        return tuple(name for name in STAGE_NAMES[: last + 1] if not self.done(name))

    def finish(self, stage: str, summary: dict[str, Any], seconds: float) -> None:
        self.data["stages"][stage] = {"done": True, "seconds": round(seconds, 2), "summary": summary}
        self.save()

    def forget(self, stages: Sequence[str]) -> None:
        for stage in stages:
            self.data["stages"].pop(stage, None)
        self.save()


def _read_state(path: Path) -> dict[str, Any]:
    """``state.json`` as written by :meth:`RunState.save`.

    Raises:
        WorkdirError: it is empty, truncated or not what iris writes.
    """
    fix = (
        "delete it to run the stages again (each resumes from what it already wrote; pass "
        "--ground-truth, --pool and --test again) or restore it from a backup"
    )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkdirError(f"{path}: cannot be read ({exc}); {fix}") from None
    if not text.strip():
        raise WorkdirError(f"{path} is empty; {fix}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkdirError(
            f"{path} is truncated or not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {fix}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise WorkdirError(f"{path}: expected an object with a 'stages' object, got {text[:40]!r}; {fix}")
    data.setdefault("stages", {})
    data.setdefault("manifests", {})
    return data


def run_pipeline(
    workdir: Workdir,
    settings: Settings,
    *,
    manifests: dict[str, Any] | None = None,
    until: str | None = None,
    redo: Sequence[str] = (),
    echo: Echo = click.echo,
) -> RunState:
    """Run every stage in order, skipping finished ones.

    Args:
        manifests: ``{"ground_truth": path, "pool": [paths], "test": path}``; remembered in
            ``state.json`` so a re-run needs none.
        until: stop after this stage.
        redo: stages to run again even if finished (their later stages are re-run too).

    Raises:
        StageOrderError: ingest has not run and no manifests were ever given.
    """
    state = RunState(workdir)
    if manifests:
        state.data["manifests"] = {k: v for k, v in manifests.items() if v}
        state.save()
    if redo:
        first = min(STAGE_NAMES.index(name) for name in redo)
        state.forget(STAGE_NAMES[first:])
    remembered = state.data.get("manifests", {})
    if not state.done("ingest") and not remembered.get("ground_truth"):
        raise StageOrderError("iris run needs manifests: pass --ground-truth, --pool and --test")
    preflight(workdir, settings, stages=state.to_run(until), manifests=remembered)
    from iris.report.training import TrainingPlot

    # The train stage draws nothing itself: the run's training picture is an epoch hook.
    options = {"manifests": remembered, "on_epoch": TrainingPlot(workdir.reports / "training.png")}
    with StageContext(workdir, settings, echo=echo, options=options) as ctx:
        for stage in STAGES:
            if state.done(stage.name):
                echo(f"[{stage.name}] done already, skipped")
            else:
                echo(f"[{stage.name}] {stage.doc}")
                start = time.perf_counter()
                report = stage.run(ctx)
                state.finish(stage.name, report.as_dict(), time.perf_counter() - start)
                echo(f"[{stage.name}] finished in {time.perf_counter() - start:.1f} s")
            if stage.name == until:
                break
    return state
