"""Stage order, state and resume for ``iris run``.

Each stage is a module with ``run(ctx) -> StageReport`` (:mod:`iris.contract`), from
tables (and vectors) to tables; :data:`STAGES` lists them in order. The pipeline runs
them and records each finished stage in ``WORK/state.json`` with its summary, duration and
the fingerprint of its inputs (:mod:`iris.runplan`); a re-run skips a finished stage whose
inputs are unchanged, and re-runs one whose inputs changed with every stage after it. A
stage interrupted half-way (even by SIGKILL) is simply run again: every stage resumes from
what it already wrote (ingest re-fetches only missing images, embed embeds only ids
missing from the store, the crowd campaign never re-buys collected answers, training
restarts from its last checkpoint).
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
from iris.runplan import INGEST_RECORD, Step, fingerprint, ingest_manifests, plan_run, rerun_line
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
    """``state.json``: finished stages with their summaries, seconds and input fingerprints,
    plus the manifests ``iris run`` was given."""

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

    def finish(
        self, stage: str, summary: dict[str, Any], seconds: float, *, inputs: dict[str, str] | None = None
    ) -> None:
        """Record ``stage`` as finished; ``inputs`` is the fingerprint it ran on (iris.runplan)."""
        record: dict[str, Any] = {"done": True, "seconds": round(seconds, 2), "summary": summary}
        if inputs is not None:
            record["inputs"] = inputs
        self.data["stages"][stage] = record
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


def plan_pipeline(
    workdir: Workdir,
    settings: Settings,
    *,
    manifests: dict[str, Any] | None = None,
    until: str | None = None,
    redo: Sequence[str] = (),
) -> list[Step]:
    """What ``run_pipeline`` would run and why (``iris run --dry-run``); changes nothing.

    Raises:
        StageOrderError: ingest has not run and no manifests were ever given.
    """
    state = RunState(workdir)
    steps, _ = _plan(workdir, settings, state, _given(workdir, state, manifests), until=until, redo=redo)
    return steps


def _plan(
    workdir: Workdir,
    settings: Settings,
    state: RunState,
    given: dict[str, Any] | None,
    *,
    until: str | None,
    redo: Sequence[str],
) -> tuple[list[Step], dict[str, list[str]]]:
    """The plan (:func:`iris.runplan.plan_run`) and the manifests ingest would read, by split.

    Raises:
        StageOrderError: ingest is to run but has no manifests to read.
    """
    read = ingest_manifests(workdir, given)
    steps = plan_run(
        STAGE_NAMES,
        state.data["stages"],
        lambda name: fingerprint(name, workdir, settings, read),
        redo=redo,
        until=until,
    )
    _require_manifests(steps, read)
    return steps, read


def _given(workdir: Workdir, state: RunState, manifests: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifests given to this run; else those an earlier ``iris run`` was given when no
    ingest has recorded its own yet (it was killed first)."""
    if manifests:
        return {k: v for k, v in manifests.items() if v}
    if not (workdir.tables / INGEST_RECORD).exists():
        return state.data.get("manifests") or None
    return None


def _require_manifests(steps: Sequence[Step], read: dict[str, list[str]]) -> None:
    """Ingest is to run (not finished, or its inputs changed) but has no manifests to read."""
    if any(step.run and step.stage == "ingest" for step in steps) and not read["gt"]:
        raise StageOrderError("iris run needs manifests: pass --ground-truth, --pool and --test")


def run_pipeline(
    workdir: Workdir,
    settings: Settings,
    *,
    manifests: dict[str, Any] | None = None,
    until: str | None = None,
    redo: Sequence[str] = (),
    echo: Echo = click.echo,
) -> RunState:
    """Run the stages in order: a finished stage whose inputs are unchanged is skipped; the
    first stage not finished, changed or named by ``redo`` runs, and every stage after it.

    Args:
        manifests: ``{"ground_truth": path, "pool": [paths], "test": path}``; remembered in
            ``state.json``. Without them ingest reads the manifests the last ingest recorded
            (``tables/ingest.json``), so ``iris ingest`` then ``iris run`` needs none.
        until: stop after this stage.
        redo: stages to run again even if unchanged (their later stages are re-run too).

    Raises:
        StageOrderError: ingest has not run and no manifests were ever given.
    """
    state = RunState(workdir)
    given = _given(workdir, state, manifests)
    if manifests and given:
        state.data["manifests"] = given
        state.save()
    steps, read = _plan(workdir, settings, state, given, until=until, redo=redo)
    line = rerun_line(steps, state.data["stages"])
    if line:
        echo(line)
    to_run = [step.stage for step in steps if step.run]
    preflight(
        workdir,
        settings,
        stages=to_run,
        manifests={
            "ground_truth": next(iter(read["gt"]), None),
            "pool": read["pool"],
            "test": next(iter(read["test"]), None),
        },
    )
    if to_run:
        # Forgotten before any runs: a run killed half-way leaves them to run, not to skip.
        state.forget(STAGE_NAMES[STAGE_NAMES.index(to_run[0]) :])
    from iris.report.training import TrainingPlot

    # The train stage draws nothing itself: the run's training picture is an epoch hook.
    options = {"manifests": given or {}, "on_epoch": TrainingPlot(workdir.reports / "training.png")}
    with StageContext(workdir, settings, echo=echo, options=options) as ctx:
        for stage in STAGES:
            if stage.name in to_run:
                echo(f"[{stage.name}] {stage.doc}")
                inputs = fingerprint(stage.name, workdir, settings, read)
                start = time.perf_counter()
                report = stage.run(ctx)
                state.finish(stage.name, report.as_dict(), time.perf_counter() - start, inputs=inputs)
                echo(f"[{stage.name}] finished in {time.perf_counter() - start:.1f} s")
            else:
                echo(f"[{stage.name}] done already, skipped")
            if stage.name == until:
                break
    return state
