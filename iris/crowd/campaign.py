"""Campaign orchestration: plan, launch, status, collect, stop — with state under ``WORK/crowd``.

::

    WORK/crowd/
      campaign.json          backend, settings fingerprint, tasks per round (written at launch)
      tasks.parquet          the tasks of round 0, the first launch (id, source, path, priority)
      ground_truth.parquet   the training / exam / honeypot split as first launched
      bans.parquet           bans found by quality control (written by collect)
      <backend>/             the backend's own state (purchase log, created object ids)
      rounds/<n>/            round n >= 1: tasks.parquet and, for most backends, <backend>/

Rounds: a crowd answer stays bought. When the shortlist changes under the same crowd
settings, ``launch`` keeps every earlier round and adds a round holding only the shortlisted
images no round has yet; ``collect`` returns the answers of every round (an image that left
the shortlist keeps its answers: they are still valid labels). The web labeler grows its
one campaign in place (its queue takes the new images); the other backends run a round in
a state directory of its own, and its pages are named ``r<n>/<page>``. The ground-truth
split is frozen at the first launch and shared by every round. Other crowd settings refuse
to resume (``launch --restart`` starts a new campaign).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from iris import tables
from iris.config import Settings
from iris.contract import StageReport
from iris.crowd.aggregation import Aggregated, aggregate
from iris.crowd.backends.base import (
    ROUNDS_DIR,
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


def build_inputs(
    workdir: Workdir, settings: Settings, *, shortlist: pl.DataFrame | None = None
) -> CampaignInputs:
    """Tasks from the shortlist and the ground-truth split from the images table.

    Args:
        shortlist: ``id``, ``priority`` of the images to send; None reads the select stage's
            ``tables/shortlist`` (the crowd rounds pass theirs).

    Raises:
        StageOrderError: no shortlist or images table yet.
        CrowdError: shortlist ids missing from the images table, or too little ground truth.
    """
    spec = CampaignSpec.from_settings(settings)
    images = tables.read(workdir.table("images"), tables.IMAGES)
    if shortlist is None:
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


GROWS_IN_PLACE = frozenset({"web"})
"""Backends whose one campaign takes new tasks as it runs (the web labeler's queue)."""


def _round_path(workdir: Workdir, n: int) -> Path:
    return workdir.crowd if n == 0 else workdir.crowd / ROUNDS_DIR / str(n)


def _round_tasks(workdir: Workdir, n: int) -> pl.DataFrame:
    return tables.read(_round_path(workdir, n) / "tasks.parquet", TASKS)


def _n_rounds(workdir: Workdir, state: dict[str, Any]) -> int:
    return len(state.get("rounds", [None])) if state else 0


def _frozen_gt(workdir: Workdir) -> pl.DataFrame | None:
    path = workdir.crowd / "ground_truth.parquet"
    return tables.read(path, GROUND_TRUTH_SPLIT) if path.exists() else None


@dataclass(frozen=True)
class _Unit:
    """One backend campaign: a round, or (a backend growing in place) every round at once."""

    backend: Backend
    inputs: CampaignInputs
    page_prefix: str


def _units(
    workdir: Workdir, settings: Settings, state: dict[str, Any], *, first: Backend | None = None
) -> list[_Unit]:
    """One backend and its inputs per round (one for all rounds where the backend grows its
    queue in place). ``first``: the backend of round 0 to use, e.g. the one that has just
    retired the campaign launched before (Toloka then starts a new run instead of refusing
    to resume the archived one)."""
    gt = _frozen_gt(workdir)
    n = _n_rounds(workdir, state)
    if gt is None or n == 0:
        return []
    spec = CampaignSpec.from_settings(settings)
    name = settings.crowd.backend
    rounds = [_round_tasks(workdir, i) for i in range(n)]
    if name in GROWS_IN_PLACE:
        tasks = pl.concat(rounds)
        backend = first or _backend(workdir, settings)
        return [_Unit(backend, CampaignInputs(spec, tasks, gt, workdir.root), "")]
    return [
        _Unit(
            (first if i == 0 and first is not None else None)
            or create_backend(name, settings=settings, state_dir=_round_path(workdir, i) / name),
            CampaignInputs(spec, tasks, gt, workdir.root),
            "" if i == 0 else f"r{i}/",
        )
        for i, tasks in enumerate(rounds)
    ]


def _frozen_inputs(workdir: Workdir, settings: Settings) -> CampaignInputs | None:
    state = _read_state(workdir)
    gt = _frozen_gt(workdir)
    if not state or gt is None or not (workdir.crowd / "tasks.parquet").exists():
        return None
    tasks = pl.concat([_round_tasks(workdir, i) for i in range(_n_rounds(workdir, state))])
    return CampaignInputs(
        spec=CampaignSpec.from_settings(settings), tasks=tasks, ground_truth=gt, root=workdir.root
    )


def load_inputs(workdir: Workdir, settings: Settings) -> CampaignInputs:
    """The inputs launched (the tasks of every round), or fresh ones when nothing was launched yet."""
    return _frozen_inputs(workdir, settings) or build_inputs(workdir, settings)


def _crowd_settings(settings: Settings) -> dict[str, Any]:
    # Connection details and the web labeler's serving options (lease, signup, limits) may
    # change while a campaign runs; they do not change what it buys.
    return {
        k: v
        for k, v in asdict(settings.crowd).items()
        if k not in {"toloka_token", "toloka_url"} and not k.startswith("web_")
    }


def _fingerprint(inputs: CampaignInputs, settings: Settings, *, with_tasks: bool = False) -> str:
    """What the crowd is asked and how (spec, crowd settings, ground-truth split), hashed.

    ``with_tasks`` hashes the task ids too: the fingerprint of a campaign written before
    rounds existed, read to carry it on.
    """
    fields: dict[str, Any] = {
        "spec": inputs.spec.fingerprint(),
        "crowd": _crowd_settings(settings),
        "gt": inputs.ground_truth["id"].to_list(),
    }
    if with_tasks:
        fields["tasks"] = inputs.tasks["id"].to_list()
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _backend(workdir: Workdir, settings: Settings) -> Backend:
    name = settings.crowd.backend
    return create_backend(name, settings=settings, state_dir=workdir.crowd / name)


def _read_state(workdir: Workdir) -> dict[str, Any]:
    path = workdir.crowd / "campaign.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_state(workdir: Workdir, state: dict[str, Any]) -> None:
    tmp = workdir.crowd / "campaign.json.tmp"
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(workdir.crowd / "campaign.json")


def plan(workdir: Workdir, settings: Settings) -> Plan:
    """What a launch would create and what it would cost; changes nothing."""
    inputs = build_inputs(workdir, settings)
    return _backend(workdir, settings).plan(inputs)


def _restart(workdir: Workdir, settings: Settings, state: dict[str, Any], backend: Backend) -> None:
    # A backend whose campaign lives elsewhere (Toloka) ends it there first, so that the new
    # launch builds new objects instead of finding and resuming the old ones.
    retire = getattr(backend, "retire", None)
    if retire is not None and (not state or state.get("backend") == settings.crowd.backend):
        retire(_frozen_inputs(workdir, settings) or build_inputs(workdir, settings))
    if state:
        shutil.rmtree(workdir.crowd / state.get("backend", settings.crowd.backend), ignore_errors=True)
        shutil.rmtree(workdir.crowd / ROUNDS_DIR, ignore_errors=True)
        for name in ("campaign.json", "tasks.parquet", "ground_truth.parquet", "bans.parquet"):
            (workdir.crowd / name).unlink(missing_ok=True)


def launch(
    workdir: Workdir, settings: Settings, *, restart: bool = False, shortlist: pl.DataFrame | None = None
) -> CampaignStatus:
    """Launch the campaign, or resume it: every round launched before, plus a new round
    holding the shortlisted images no round has yet.

    Args:
        shortlist: what to send (``id``, ``priority``) instead of ``tables/shortlist``.
        restart: end the campaign launched before (a backend with a ``retire`` method, such as
            Toloka, closes and archives it on the platform), forget the campaign state in
            ``WORK/crowd`` and launch afresh: nothing of the old campaign is resumed.

    Raises:
        CrowdError: a campaign with another backend, spec or crowd settings was launched
            here before.
    """
    workdir.crowd.mkdir(parents=True, exist_ok=True)
    state = _read_state(workdir)
    backend = _backend(workdir, settings)
    if restart:
        _restart(workdir, settings, state, backend)
        state = {}
    fresh = build_inputs(workdir, settings, shortlist=shortlist)
    if not state:
        backend.plan(fresh)  # validates everything the backend needs before any state is written
        tables.write(fresh.tasks, workdir.crowd / "tasks.parquet")
        tables.write(fresh.ground_truth, workdir.crowd / "ground_truth.parquet")
        state = {
            "backend": settings.crowd.backend,
            "fingerprint": _fingerprint(fresh, settings),
            "rounds": [fresh.tasks.height],
            "tasks": fresh.tasks.height,
            "launched_at": datetime.now(UTC).isoformat(),
        }
        _write_state(workdir, state)
    else:
        state = _check_same_campaign(workdir, settings, state)
        state = _add_round(workdir, settings, state, fresh)
    units = _units(workdir, settings, state, first=backend if restart else None)
    statuses = [unit.backend.launch(unit.inputs) for unit in units]
    return _combine(statuses, settings.crowd.backend)


def _check_same_campaign(workdir: Workdir, settings: Settings, state: dict[str, Any]) -> dict[str, Any]:
    """The campaign state, after checking it was launched with these crowd settings."""
    frozen = _frozen_inputs(workdir, settings)
    if frozen is None:
        raise CrowdError(f"{workdir.crowd}: campaign.json without its tasks; pass --restart")
    legacy = "rounds" not in state
    fingerprint = _fingerprint(frozen, settings, with_tasks=legacy)
    if state.get("fingerprint") != fingerprint or state.get("backend") != settings.crowd.backend:
        raise CrowdError(
            f"{workdir.crowd / 'campaign.json'}: a campaign was launched here with backend "
            f"{state.get('backend')!r} and other settings (fingerprint {state.get('fingerprint')} != "
            f"{fingerprint}); resume it with the same settings or pass --restart"
        )
    if legacy:
        state = {**state, "fingerprint": _fingerprint(frozen, settings), "rounds": [frozen.tasks.height]}
        _write_state(workdir, state)
    return state


def _add_round(
    workdir: Workdir, settings: Settings, state: dict[str, Any], fresh: CampaignInputs
) -> dict[str, Any]:
    """A new round of the shortlisted images no round holds yet (none when there are none)."""
    n = _n_rounds(workdir, state)
    bought = set(pl.concat([_round_tasks(workdir, i) for i in range(n)])["id"].to_list())
    new = fresh.tasks.filter(~pl.col("id").is_in(list(bought)))
    if not new.height:
        return state
    path = _round_path(workdir, n)
    path.mkdir(parents=True, exist_ok=True)
    # The tasks file is written first and the state last: a kill in between leaves a round
    # nobody counts, written again the same way by the next launch.
    tables.write(new, path / "tasks.parquet")
    state = {**state, "rounds": [*state["rounds"], new.height], "tasks": len(bought) + new.height}
    _write_state(workdir, state)
    return state


def _combine(statuses: list[CampaignStatus], backend: str) -> CampaignStatus:
    """One status for the rounds: counts added up, complete when every round is."""
    if len(statuses) == 1:
        return statuses[0]
    states = {s.state for s in statuses}
    state = (
        "stopped" if "stopped" in states else
        "running" if "running" in states or "not-launched" in states else "complete"
    )  # fmt: skip
    detail: dict[str, object] = dict(statuses[-1].detail)
    detail["rounds"] = len(statuses)
    return CampaignStatus(
        backend=backend,
        state=state,  # type: ignore[arg-type]
        pages=sum(s.pages for s in statuses),
        answers=sum(s.answers for s in statuses),
        tasks_total=sum(s.tasks_total for s in statuses),
        tasks_done=sum(s.tasks_done for s in statuses),
        workers=max(s.workers for s in statuses),
        banned=sum(s.banned for s in statuses),
        cost=sum(s.cost for s in statuses),
        detail=detail,
    )


def _require_launched(workdir: Workdir) -> dict[str, Any]:
    state = _read_state(workdir)
    if not state:
        raise CrowdError(f"no campaign in {workdir.crowd}; run `iris crowd launch` first")
    return state


def status(workdir: Workdir, settings: Settings) -> CampaignStatus:
    state = _read_state(workdir)
    if not state:
        inputs = load_inputs(workdir, settings)
        return CampaignStatus(
            backend=settings.crowd.backend, state="not-launched", tasks_total=inputs.tasks.height
        )
    units = _units(workdir, settings, state)
    return _combine([u.backend.status(u.inputs) for u in units], settings.crowd.backend)


def collect(workdir: Workdir, settings: Settings) -> Collected:
    """Write the answers of every round collected so far to the ``answers`` table and the
    bans to ``crowd/bans.parquet``; returns both."""
    state = _require_launched(workdir)
    answers_parts, bans_parts = [], []
    for unit in _units(workdir, settings, state):
        collected = unit.backend.collect(unit.inputs)
        part = tables.check(collected.answers, tables.ANSWERS, where="crowd collect").select(
            list(tables.ANSWERS)
        )
        if unit.page_prefix:
            part = part.with_columns(pl.concat_str(pl.lit(unit.page_prefix), pl.col("page")).alias("page"))
        answers_parts.append(part)
        bans_parts.append(collected.bans.cast(BANS))  # type: ignore[arg-type]
    answers = pl.concat(answers_parts)
    bans = pl.concat(bans_parts)
    duplicated = answers.filter(pl.struct("task", "worker", "page").is_duplicated())
    if duplicated.height:
        raise CrowdError(f"crowd collect: {duplicated.height} duplicated answers from the backend")
    tables.write(answers, workdir.table("answers"))
    tables.write(bans, workdir.crowd / "bans.parquet")
    return Collected(answers=answers, bans=bans)


def stop(workdir: Workdir, settings: Settings) -> CampaignStatus:
    state = _require_launched(workdir)
    units = _units(workdir, settings, state)
    return _combine([u.backend.stop(u.inputs) for u in units], settings.crowd.backend)


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


def aggregate_collected(workdir: Workdir, settings: Settings, answers: pl.DataFrame) -> Aggregated:
    """``answers`` aggregated by the ``[aggregate]`` settings, with this campaign's gold (the
    honeypots' labels) and bans: what the aggregate stage and each crowd round compute."""
    return aggregate(
        answers,
        method=settings.aggregate.method,
        gold=read_gold(workdir),
        banned=read_bans(workdir)["worker"].to_list(),
        use_honeypots=settings.aggregate.use_honeypots,
        n_iter=settings.aggregate.n_iter,
    )


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


def campaign_report(workdir: Workdir, settings: Settings, collected: Collected) -> CampaignReport:
    """The campaign in numbers, from its status and what was just collected."""
    st = status(workdir, settings)
    answers = collected.answers
    return CampaignReport(
        backend=st.backend,
        state=st.state,
        tasks=st.tasks_total,
        tasks_done=st.tasks_done,
        pages=st.pages,
        answers=answers.height,
        honeypot_answers=int(answers["is_honeypot"].sum()),
        workers=st.workers,
        banned=collected.bans.height,
        bans_by_rule=bans_by_rule(collected.bans),
        cost=st.cost,
        next_step=str(st.detail.get("next_step", "")),
    )


def require_complete(report: CampaignReport) -> None:
    """Refuse to go on with a campaign whose crowd has not finished (a real crowd takes hours).

    Raises:
        CrowdError: the campaign is not complete; the answers so far are kept and running
            again later collects the rest and goes on.
    """
    if report.state != "complete":
        raise CrowdError(
            f"the {report.backend} crowd campaign is {report.state}: {report.tasks_done}/{report.tasks} "
            "tasks have their answers; "
            + (f"{report.next_step}; " if report.next_step else "")
            + "run `iris run` again later to collect and go on"
        )


SKIPPED = "skipped"
"""The state of a crowd stage that had nothing to send."""


def skipped_report(settings: Settings) -> CampaignReport:
    """The report of a crowd stage that launched nothing: nothing bought."""
    return CampaignReport(
        backend=settings.crowd.backend,
        state=SKIPPED,
        tasks=0,
        tasks_done=0,
        pages=0,
        answers=0,
        honeypot_answers=0,
        workers=0,
        banned=0,
        bans_by_rule={},
        cost=0.0,
        next_step="",
    )
