"""The crowd backend interface and the registry of backends by name.

A backend carries out a :class:`~iris.crowd.spec.CampaignSpec` on a list of tasks:

* ``plan`` says what would be created and what it costs, touching nothing;
* ``launch`` creates (or, on a re-run, finds) everything and starts the campaign; it is
  idempotent — running it again never creates duplicate tasks or pools;
* ``status`` reports progress; ``collect`` returns the answers collected so far;
* ``stop`` closes the campaign.

Backends keep their state under ``WORK/crowd/<backend>/`` so a killed process resumes.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import polars as pl

from iris.config import Settings
from iris.crowd import platform
from iris.crowd.spec import CampaignSpec
from iris.errors import CrowdError

State = Literal["not-launched", "running", "complete", "stopped"]


@dataclass(frozen=True)
class CampaignInputs:
    """What a campaign works on."""

    spec: CampaignSpec
    tasks: pl.DataFrame
    """id, source, path, priority — the shortlist, first to send first."""
    ground_truth: pl.DataFrame
    """GROUND_TRUTH_SPLIT: id, source, path, label, role (training/exam/honeypot)."""
    root: Path
    """The work directory (image paths are relative to it)."""

    def role(self, role: str) -> pl.DataFrame:
        return self.ground_truth.filter(pl.col("role") == role)

    @property
    def gold(self) -> pl.DataFrame:
        """task, label of the honeypots."""
        return self.role("honeypot").select(pl.col("id").alias("task"), "label")


@dataclass(frozen=True)
class Plan:
    """What a launch would create and buy."""

    backend: str
    tasks: int
    training: int
    exam: int
    honeypots: int
    pages: int
    answers: int
    """Real-task answers bought (tasks × overlap), before re-issues."""
    cost: float
    """Main-pool pages × price per page, plus the exam per qualified worker where paid."""
    objects: list[str] = field(default_factory=list)
    """Human-readable list of what would be created."""
    max_pages_per_worker: int | None = None
    """Pages one worker can do before the honeypots they have not seen run out (None: no limit)."""
    warnings: list[str] = field(default_factory=list)
    """Problems found before anything is created (the campaign can still be launched)."""

    @classmethod
    def of(
        cls,
        backend: str,
        inputs: CampaignInputs,
        objects: list[str],
        *,
        pages_per_worker: int | None = None,
        warnings: list[str] | None = None,
    ) -> Plan:
        """The plan of carrying out ``inputs`` as its spec says (counts and cost from the spec).

        Args:
            pages_per_worker: pages a worker is planned to do; a warning is added when the
                honeypots cannot supply them (see :func:`iris.crowd.platform.honeypot_shortage`).
            warnings: further warnings of the backend.
        """
        spec, n = inputs.spec, inputs.tasks.height
        n_honeypots = inputs.role("honeypot").height
        found = list(warnings or [])
        if pages_per_worker is not None:
            shortage = platform.honeypot_shortage(
                spec,
                n_honeypots=n_honeypots,
                n_ground_truth=inputs.ground_truth.height,
                pages_per_worker=pages_per_worker,
            )
            if shortage:
                found.insert(0, shortage)
        return cls(
            backend=backend,
            tasks=n,
            training=inputs.role("training").height,
            exam=inputs.role("exam").height,
            honeypots=inputs.role("honeypot").height,
            pages=spec.pages_for(n),
            answers=n * spec.overlap,
            cost=spec.cost_for(n),
            objects=objects,
            max_pages_per_worker=platform.max_pages_per_worker(n_honeypots, spec.honeypots_per_page),
            warnings=found,
        )


@dataclass(frozen=True)
class CampaignStatus:
    backend: str
    state: State
    pages: int = 0
    answers: int = 0
    tasks_total: int = 0
    tasks_done: int = 0
    """Tasks with at least ``overlap`` answers."""
    workers: int = 0
    banned: int = 0
    cost: float = 0.0
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Collected:
    answers: pl.DataFrame
    """ANSWERS table (honeypot answers kept, with is_honeypot True)."""
    bans: pl.DataFrame
    """BANS table (see iris.crowd.quality)."""


def tasks_done(answers: pl.DataFrame, *, overlap: int, ignore_workers: Collection[str] = ()) -> int:
    """Real tasks (not honeypots) with at least ``overlap`` answers, not counting ``ignore_workers``.

    Args:
        answers: ANSWERS table.
    """
    real = answers.filter(~pl.col("is_honeypot") & ~pl.col("worker").is_in(list(ignore_workers)))
    per_task = real.group_by("task").len()
    return int((per_task["len"] >= overlap).sum()) if per_task.height else 0


@runtime_checkable
class Backend(Protocol):
    name: str

    def plan(self, inputs: CampaignInputs) -> Plan: ...

    def launch(self, inputs: CampaignInputs) -> CampaignStatus: ...

    def status(self, inputs: CampaignInputs) -> CampaignStatus: ...

    def collect(self, inputs: CampaignInputs) -> Collected: ...

    def stop(self, inputs: CampaignInputs) -> CampaignStatus: ...


ROUNDS_DIR = "rounds"
"""``WORK/crowd/rounds/N``: the state of a campaign's round N ≥ 1 (round 0's is ``WORK/crowd``);
a backend keeps its own under ``<round>/<backend name>``."""


# Backends are imported on demand: toloka-kit is an optional extra.
BACKENDS: dict[str, str] = {
    "simulated": "iris.crowd.backends.simulated:SimulatedBackend",
    "toloka": "iris.crowd.backends.toloka:TolokaBackend",
    "web": "iris.crowd.backends.web:WebBackend",
}


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def create_backend(name: str, *, settings: Settings, state_dir: Path) -> Backend:
    """Instantiate the backend registered as ``name``, keeping its state in ``state_dir``.

    Raises:
        CrowdError: unknown name, or its optional dependency is not installed.
    """
    if name not in BACKENDS:
        raise CrowdError(f"crowd.backend: unknown backend {name!r}, expected one of {', '.join(BACKENDS)}")
    module_name, cls_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CrowdError(
            f"crowd backend {name!r} needs an optional dependency ({exc.name}); "
            f"install it with `pip install 'iris-labeling[{name}]'`"
        ) from None
    backend: Backend = getattr(module, cls_name)(settings=settings, state_dir=state_dir)
    return backend
