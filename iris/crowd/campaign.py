"""Campaign orchestration: plan, launch, status, collect, stop — with state under ``WORK/crowd``.

::

    WORK/crowd/
      campaign.json          backend, spec fingerprint, task count (written at launch)
      tasks.parquet          the tasks as launched (id, source, path, priority)
      ground_truth.parquet   the training / exam / honeypot split as launched
      bans.parquet           bans found by quality control (written by collect)
      <backend>/             the backend's own state (purchase log, created object ids)

The tasks and the ground-truth split are frozen at launch: a later change of the shortlist
does not silently change a running campaign (``launch --restart`` starts a new one).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from iris import tables
from iris.config import Settings
from iris.contract import StageReport
from iris.crowd.backends.base import (
    Backend,
    CampaignInputs,
    CampaignStatus,
    Collected,
    Plan,
    create_backend,
)
from iris.crowd.quality import BANS
from iris.crowd.spec import GROUND_TRUTH_SPLIT, CampaignSpec, split_ground_truth
from iris.errors import CrowdError
from iris.workdir import Workdir

TASKS = tables.TASKS


def build_inputs(workdir: Workdir, settings: Settings) -> CampaignInputs:
    """Tasks from the shortlist and the ground-truth split from the images table.

    Raises:
        StageOrderError: no shortlist or images table yet.
        CrowdError: shortlist ids missing from the images table, or too little ground truth.
    """
    spec = CampaignSpec.from_settings(settings)
    images = tables.read(workdir.table("images"), tables.IMAGES)
    shortlist = tables.read(workdir.table("shortlist"), tables.SHORTLIST)
    ground_truth = split_ground_truth(images, spec)
    tasks = shortlist.select("id", "priority").join(
        images.select("id", "source", "path", "split"), on="id", how="left"
    )
    unknown = tasks.filter(pl.col("source").is_null())
    if unknown.height:
        raise CrowdError(
            f"{workdir.table('shortlist')}: {unknown.height} ids are not in the images table; "
            f"first: {unknown['id'][0]}"
        )
    # Ground truth is never sent as a real task: it is what the crowd is checked against.
    tasks = tasks.filter(pl.col("split") != "gt").sort("priority", "id").select(list(TASKS)).cast(TASKS)  # type: ignore[arg-type]
    return CampaignInputs(spec=spec, tasks=tasks, ground_truth=ground_truth, root=workdir.root)


def _frozen_inputs(workdir: Workdir, settings: Settings) -> CampaignInputs | None:
    tasks_path = workdir.crowd / "tasks.parquet"
    gt_path = workdir.crowd / "ground_truth.parquet"
    if not (tasks_path.exists() and gt_path.exists()):
        return None
    return CampaignInputs(
        spec=CampaignSpec.from_settings(settings),
        tasks=tables.read(tasks_path, TASKS),
        ground_truth=tables.read(gt_path, GROUND_TRUTH_SPLIT),
        root=workdir.root,
    )


def load_inputs(workdir: Workdir, settings: Settings) -> CampaignInputs:
    """The inputs frozen at launch, or fresh ones when nothing was launched yet."""
    return _frozen_inputs(workdir, settings) or build_inputs(workdir, settings)


def _fingerprint(inputs: CampaignInputs, settings: Settings) -> str:
    # Connection details and the web labeler's serving options (lease, signup, limits) may
    # change while a campaign runs; they do not change what it buys.
    crowd = {
        k: v
        for k, v in asdict(settings.crowd).items()
        if k not in {"toloka_token", "toloka_url"} and not k.startswith("web_")
    }
    blob = json.dumps(
        {
            "spec": inputs.spec.fingerprint(),
            "crowd": crowd,
            "tasks": inputs.tasks["id"].to_list(),
            "gt": inputs.ground_truth["id"].to_list(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _backend(workdir: Workdir, settings: Settings) -> Backend:
    name = settings.crowd.backend
    return create_backend(name, settings=settings, state_dir=workdir.crowd / name)


def _read_state(workdir: Workdir) -> dict[str, Any]:
    path = workdir.crowd / "campaign.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def plan(workdir: Workdir, settings: Settings) -> Plan:
    """What a launch would create and what it would cost; changes nothing."""
    inputs = build_inputs(workdir, settings)
    return _backend(workdir, settings).plan(inputs)


def launch(workdir: Workdir, settings: Settings, *, restart: bool = False) -> CampaignStatus:
    """Launch the campaign, or resume the one already launched with the same spec and tasks.

    Args:
        restart: end the campaign launched before (a backend with a ``retire`` method, such as
            Toloka, closes and archives it on the platform), forget the campaign state in
            ``WORK/crowd`` and launch afresh: nothing of the old campaign is resumed.

    Raises:
        CrowdError: a campaign with another spec or other tasks was launched here before.
    """
    workdir.crowd.mkdir(parents=True, exist_ok=True)
    state = _read_state(workdir)
    backend = _backend(workdir, settings)
    if restart:
        # A backend whose campaign lives elsewhere (Toloka) ends it there first, so that the new
        # launch builds new objects instead of finding and resuming the old ones.
        retire = getattr(backend, "retire", None)
        if retire is not None and (not state or state.get("backend") == settings.crowd.backend):
            retire(_frozen_inputs(workdir, settings) or build_inputs(workdir, settings))
    if restart and state:
        shutil.rmtree(workdir.crowd / state.get("backend", settings.crowd.backend), ignore_errors=True)
        for name in ("campaign.json", "tasks.parquet", "ground_truth.parquet", "bans.parquet"):
            (workdir.crowd / name).unlink(missing_ok=True)
        state = {}
    inputs = _frozen_inputs(workdir, settings) if state else None
    inputs = inputs or build_inputs(workdir, settings)
    fingerprint = _fingerprint(inputs, settings)
    if state and (state.get("fingerprint") != fingerprint or state.get("backend") != settings.crowd.backend):
        raise CrowdError(
            f"{workdir.crowd / 'campaign.json'}: a campaign was launched here with backend "
            f"{state.get('backend')!r} and other settings (fingerprint {state.get('fingerprint')} != "
            f"{fingerprint}); resume it with the same settings or pass --restart"
        )
    if not state:
        backend.plan(inputs)  # validates everything the backend needs before any state is written
        tables.write(inputs.tasks, workdir.crowd / "tasks.parquet")
        tables.write(inputs.ground_truth, workdir.crowd / "ground_truth.parquet")
        state = {
            "backend": settings.crowd.backend,
            "fingerprint": fingerprint,
            "tasks": inputs.tasks.height,
            "launched_at": datetime.now(UTC).isoformat(),
        }
        tmp = workdir.crowd / "campaign.json.tmp"
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(workdir.crowd / "campaign.json")
    return backend.launch(inputs)


def _require_launched(workdir: Workdir) -> dict[str, Any]:
    state = _read_state(workdir)
    if not state:
        raise CrowdError(f"no campaign in {workdir.crowd}; run `iris crowd launch` first")
    return state


def status(workdir: Workdir, settings: Settings) -> CampaignStatus:
    if not _read_state(workdir):
        inputs = load_inputs(workdir, settings)
        return CampaignStatus(
            backend=settings.crowd.backend, state="not-launched", tasks_total=inputs.tasks.height
        )
    inputs = load_inputs(workdir, settings)
    return _backend(workdir, settings).status(inputs)


def collect(workdir: Workdir, settings: Settings) -> Collected:
    """Write the answers collected so far to the ``answers`` table and the bans to
    ``crowd/bans.parquet``; returns both."""
    _require_launched(workdir)
    inputs = load_inputs(workdir, settings)
    collected = _backend(workdir, settings).collect(inputs)
    answers = tables.check(collected.answers, tables.ANSWERS, where="crowd collect").select(
        list(tables.ANSWERS)
    )
    duplicated = answers.filter(pl.struct("task", "worker", "page").is_duplicated())
    if duplicated.height:
        raise CrowdError(f"crowd collect: {duplicated.height} duplicated answers from the backend")
    tables.write(answers, workdir.table("answers"))
    tables.write(collected.bans.cast(BANS), workdir.crowd / "bans.parquet")  # type: ignore[arg-type]
    return collected


def stop(workdir: Workdir, settings: Settings) -> CampaignStatus:
    _require_launched(workdir)
    return _backend(workdir, settings).stop(load_inputs(workdir, settings))


def read_bans(workdir: Workdir) -> pl.DataFrame:
    path = workdir.crowd / "bans.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=BANS)


def read_gold(workdir: Workdir) -> pl.DataFrame:
    """task, label of the honeypots of the launched campaign (empty when none)."""
    path = workdir.crowd / "ground_truth.parquet"
    if not path.exists():
        return pl.DataFrame(schema={"task": pl.Int64, "label": pl.Int8})
    gt = tables.read(path, GROUND_TRUTH_SPLIT)
    return gt.filter(pl.col("role") == "honeypot").select(pl.col("id").alias("task"), "label")


def bans_by_rule(bans: pl.DataFrame) -> dict[str, int]:
    """How many bans each quality-control rule made (BANS rows), by rule name."""
    counts = bans.group_by("rule").len().sort("rule")
    return dict(zip(counts["rule"].to_list(), counts["len"].to_list(), strict=True))


@dataclass(frozen=True)
class CampaignReport(StageReport):
    """A campaign in numbers (what ``iris run`` records for the crowd stage)."""

    backend: str
    state: str
    tasks: int
    tasks_done: int
    pages: int
    answers: int
    honeypot_answers: int
    workers: int
    banned: int
    bans_by_rule: dict[str, int]
    cost: float
    next_step: str = ""
    """What the user does to move an unfinished campaign on (serve it, invite people…)."""
