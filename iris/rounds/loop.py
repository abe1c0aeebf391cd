"""The crowd rounds of ``iris run``: pick a round, buy it, aggregate, re-label, audit, again.

Each round:

1. labels every open image (not ground truth, not bought) with every label known so far
   (:mod:`iris.rounds.labeler`: the kNN ensemble over Qdrant, whose labeled points are the
   ground truth and the crowd's aggregated labels, averaged with a probe);
2. picks what to buy by ``[rounds] strategy`` (:func:`iris.rounds.strategies.pick`) and
   a uniform audit sample of the images left automatic (:func:`iris.rounds.audit.audit_sample`);
3. writes them to ``tables/round_tasks`` (with the automatic label each had when drawn)
   **before** anything is bought, then launches them as a round of the campaign
   (:func:`iris.crowd.campaign.launch`: a round holds only images no round has yet);
4. collects and aggregates every answer bought so far;
5. estimates the automatic labels' accuracy from the audit (:func:`audit_estimate`),
   decides to stop or go on (:func:`decide`), and appends the round to ``tables/rounds``.

After the last round the open images get their final automatic label from the same labeler
(``tables/round_labels``), which the final dataset takes as its ``auto`` source.

Resume: a run killed anywhere picks up where it was. A round in ``round_tasks`` but not in
``rounds`` is launched again as recorded (the campaign never re-buys a page), so a SIGKILL
inside round 3 resumes inside round 3; a round not yet recorded is drawn again, the same way
(its random draws are seeded by the round's number). A real crowd that has not finished a
round stops the run with one line (:func:`iris.crowd.campaign.require_complete`); running it
again later goes on from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from iris import tables
from iris.config import RoundsSettings, Settings
from iris.contract import StageContext
from iris.crowd.campaign import (
    CampaignReport,
    aggregate_collected,
    campaign_report,
    collect,
    launch,
    load_inputs,
    require_complete,
    skipped_report,
)
from iris.errors import StageOrderError
from iris.neighbours import neighbours_from_hits
from iris.pseudolabel.kmeans import normalise
from iris.pseudolabel.members import parse_members
from iris.rounds.audit import STOP_REASONS, AuditEstimate, audit_estimate, audit_sample, decide
from iris.rounds.labeler import AutoLabels, blend, knn_share, probe_share
from iris.rounds.strategies import Candidates, pick
from iris.stagekit import (
    CLUSTERED_SPLITS,
    HITS_CHUNK,
    Points,
    Stopwatch,
    batched_query,
    exact_search,
    read_points,
    store_distance,
)
from iris.store.base import Filter, VectorStore
from iris.tables import Origin
from iris.workdir import Workdir

KNOWN = Filter(
    must={"has_label": True, "split": list(CLUSTERED_SPLITS)},
    must_not={"origin": [Origin.AUTO.value, Origin.PROPAGATED.value]},
)
"""The points a round's kNN votes with: ground truth and the crowd labels the loop wrote."""
CROWD = Filter(must={"origin": Origin.CROWD.value})


@dataclass(frozen=True)
class RoundsReport(CampaignReport):
    """The campaign in numbers, plus the rounds that bought it."""

    rounds: int = 0
    stop_reason: str = ""
    share: float = 0.0
    """Pool share bought by every round, audits included."""
    audit_accuracy: float | None = None
    audit_low: float | None = None
    audit_high: float | None = None
    """The last round's audit of the automatic labels, with its 95% interval."""
    expected_low: float | None = None
    auto: int = 0
    """Pool images that keep an automatic label (``tables/round_labels``)."""
    per_round: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Pool:
    """The store's points as the loop sees them, with every label known so far."""

    points: Points
    vectors: npt.NDArray[np.float32]
    rows: npt.NDArray[np.int64]
    """Rows of ``points`` that are ground truth or pool (never test)."""
    known: npt.NDArray[np.bool_]
    labels: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.points.exported.ids[self.rows], dtype=np.int64)


def _read_pool(store: VectorStore, watch: Stopwatch) -> _Pool:
    points = read_points(store, watch)
    rows = np.flatnonzero(points.labeled | points.pool)
    return _Pool(
        points=points,
        vectors=normalise(points.exported.vectors),
        rows=rows,
        known=points.labeled[rows].copy(),
        labels=points.labels[rows].copy(),
        confidence=points.labeled[rows].astype(np.float64),
    )


def _learn(pool: _Pool, store: VectorStore, aggregated: pl.DataFrame) -> int:
    """Add the crowd's aggregated labels to the known set and to the store's payload (origin
    ``crowd``); a crowd label the store holds from an earlier campaign is dropped. Returns
    how many pool images the crowd labels."""
    pool.known = pool.points.labeled[pool.rows].copy()
    pool.labels = pool.points.labels[pool.rows].copy()
    pool.confidence = pool.points.labeled[pool.rows].astype(np.float64)
    row_of = {int(i): r for r, i in enumerate(pool.ids.tolist())}
    crowd: dict[int, tuple[int, float]] = {}
    for task, label, confidence in aggregated.select("task", "label", "confidence").iter_rows():
        r = row_of.get(int(task))
        if r is None or label is None or pool.known[r]:
            continue
        crowd[int(task)] = (int(label), float(confidence))
        pool.known[r], pool.labels[r], pool.confidence[r] = True, int(label), float(confidence)
    stale = store.ids(CROWD) - set(crowd)
    if stale:
        store.set_payload({i: {"has_label": False, "origin": None} for i in stale})
    if crowd:
        store.set_payload(
            {
                i: {"label": lab, "has_label": True, "origin": Origin.CROWD.value}
                for i, (lab, _) in crowd.items()
            }
        )
    return len(crowd)


def _label_open(pool: _Pool, store: VectorStore, settings: Settings, watch: Stopwatch) -> AutoLabels:
    """Automatic labels of every row of ``pool`` (known rows get theirs with certainty 1)."""
    members = parse_members(settings.pseudolabel.members)
    k = max(m.k for m in members)
    open_rows = np.flatnonzero(~pool.known)
    exact = exact_search(store, settings.pseudolabel.exact, settings.store.exact_max_points)
    shares = []
    for start in range(0, len(open_rows), HITS_CHUNK):
        hits = batched_query(
            store,
            pool.vectors[pool.rows[open_rows[start : start + HITS_CHUNK]]],
            k=k,
            flt=KNOWN,
            batch_size=settings.pseudolabel.batch_size,
            exact=exact,
            desc="rounds: kNN",
            watch=watch,
        )
        shares.append(knn_share(neighbours_from_hits(hits, k=k, distance=store_distance(store)), members))
    p1 = np.asarray(pool.labels, dtype=np.float64)
    knn_p1 = np.concatenate(shares) if shares else np.zeros(0)
    probe_p1 = None
    if settings.rounds.labeler == "knn+probe" and len(open_rows):
        known_rows = np.flatnonzero(pool.known)
        probe_p1 = probe_share(
            pool.vectors[pool.rows],
            known_rows,
            pool.labels[known_rows],
            pool.confidence[known_rows],
            rows=open_rows,
        )
    p1[open_rows] = blend(knn_p1, probe_p1).p1
    return blend(p1, None)


def _aggregated(workdir: Workdir, settings: Settings) -> pl.DataFrame:
    """Every answer bought so far, aggregated (one row per task)."""
    return aggregate_collected(workdir, settings, tables.read(workdir.table("answers"), tables.ANSWERS)).tasks


def _read_or_empty(workdir: Workdir, name: str, schema: tables.Schema) -> pl.DataFrame:
    path = workdir.table(name)
    return tables.read(path, schema) if path.exists() else tables.empty(schema)


def _draw(
    index: int,
    pool: _Pool,
    labels: AutoLabels,
    settings: Settings,
    *,
    n_pick: int,
    n_audit: int,
    priority: int,
) -> pl.DataFrame:
    """Round ``index``'s picks and audit as ROUND_TASKS rows."""
    rng = np.random.default_rng([settings.rounds.seed, index])
    candidates = Candidates(
        ids=pool.ids, vectors=pool.vectors[pool.rows], labeled=pool.known, certainty=labels.certainty
    )
    picks = pick(settings.rounds.strategy, candidates, n=n_pick, rng=rng)
    still_auto = candidates.open[~np.isin(candidates.open, picks)]
    audit = audit_sample(still_auto, n=n_audit, rng=rng)
    rows = np.concatenate([picks, audit]).astype(np.int64)
    return pl.DataFrame(
        {
            "id": pool.ids[rows],
            "round": [index] * len(rows),
            "role": ["pick"] * len(picks) + ["audit"] * len(audit),
            "priority": np.arange(priority, priority + len(rows)),
            "auto_label": labels.label[rows],
            "certainty": labels.certainty[rows],
        },
        schema=tables.ROUND_TASKS,
    )


def _audit(drawn: pl.DataFrame, aggregated: pl.DataFrame) -> AuditEstimate:
    """The audit of one round: its audited images' labels when drawn against the crowd's."""
    audited = drawn.filter(pl.col("role") == "audit").join(
        aggregated.select(pl.col("task").alias("id"), "label", "confidence"), on="id", how="inner"
    )
    audited = audited.filter(pl.col("label").is_not_null())
    return audit_estimate(
        audited["auto_label"].to_numpy(), audited["label"].to_numpy(), audited["confidence"].to_numpy()
    )


def _round_row(
    index: int,
    drawn: pl.DataFrame,
    bought: int,
    n_pool: int,
    cost: float,
    est: AuditEstimate,
    crowd_accuracy: float,
    expected_low: float | None,
    stop: bool,
    reason: str,
) -> dict[str, Any]:
    return {
        "round": index,
        "picked": int((drawn["role"] == "pick").sum()),
        "audited": int((drawn["role"] == "audit").sum()),
        "bought": bought,
        "share": bought / n_pool if n_pool else 0.0,
        "cost": round(cost, 4),
        "audit_n": est.n,
        "audit_agree": est.agree,
        "audit_accuracy": est.accuracy,
        "audit_low": est.low,
        "audit_high": est.high,
        "crowd_accuracy": crowd_accuracy,
        "expected_low": expected_low,
        "stop": stop,
        "reason": reason,
    }


def _still_stopped(last: dict[str, Any], r: RoundsSettings, next_round: int, budget: int) -> bool:
    """Whether the last recorded round's stop still holds under today's ``[rounds]``: a
    raised ``max_rounds``, ``budget`` or ``target`` goes on from there (what was bought stays)."""
    if not last["stop"]:
        return False
    if last["reason"] == "rounds":
        return last["round"] + 1 >= r.max_rounds
    if last["reason"] == "budget":
        return last["bought"] + next_round > budget
    if last["reason"] == "target":
        return last["expected_low"] is not None and last["expected_low"] >= r.target
    return True


def run_rounds(ctx: StageContext) -> RoundsReport:
    """The crowd stage in rounds (see the module docstring).

    Raises:
        StageOrderError: the store is empty, or ``tables/rounds`` records a round that
            ``tables/round_tasks`` does not.
        CrowdError: a real crowd has not finished the current round (come back later).
    """
    workdir, settings, store, r = ctx.workdir, ctx.settings, ctx.store, ctx.settings.rounds
    watch = Stopwatch()
    pool = _read_pool(store, watch)
    n_pool = int(pool.points.pool.sum())
    n_gt = int(pool.known.sum())
    round_n = max(1, round(r.round_size * n_pool))
    audit_n = round(r.audit_share * n_pool)
    budget = round(r.budget * n_pool)
    drawn_all = _read_or_empty(workdir, "round_tasks", tables.ROUND_TASKS)
    done = _read_or_empty(workdir, "rounds", tables.ROUNDS)
    if done.height and (done["round"].max() or 0) > (drawn_all["round"].max() if drawn_all.height else -1):  # type: ignore[operator]
        last_round = int(done["round"].max())  # type: ignore[arg-type]
        raise StageOrderError(
            f"{workdir.table('rounds')} records round {last_round} that "
            f"{workdir.table('round_tasks')} does not; delete both (and WORK/crowd, to buy "
            "again) or restore them from a backup"
        )
    # Images a campaign launched here before holds (e.g. by the seed's single round) count as bought.
    launched = (
        set(load_inputs(workdir, settings).tasks["id"].to_list())
        if (workdir.crowd / "campaign.json").exists()
        else set()
    )
    report: CampaignReport | None = None
    if r.strategy == "none" or n_pool == 0:
        tables.write(tables.empty(tables.ANSWERS), workdir.table("answers"))
        ctx.echo("[crowd] rounds: strategy none (or an empty pool): nothing bought")
    index = done.height
    learned = False  # the pool holds the crowd labels of everything bought so far
    stopped = bool(done.height) and _still_stopped(done.row(-1, named=True), r, round_n + audit_n, budget)
    while not stopped and r.strategy != "none" and n_pool:
        started = time.perf_counter()
        drawn = drawn_all.filter(pl.col("round") == index)
        spent = len(launched | set(drawn_all["id"].to_list()))
        if not drawn.height:
            if index and not learned:
                _learn(pool, store, _aggregated(workdir, settings))
                learned = True
            labels = _label_open(pool, store, settings, watch)
            n_pick = max(0, min(round_n, budget - spent - audit_n))
            drawn = _draw(
                index, pool, labels, settings, n_pick=n_pick, n_audit=audit_n, priority=drawn_all.height
            )
            if not drawn.height:
                break
            drawn_all = pl.concat([drawn_all, drawn])
            tables.write(drawn_all, workdir.table("round_tasks"))  # before anything is bought
        n_audited = int((drawn["role"] == "audit").sum())
        ctx.echo(f"[crowd] round {index + 1}: buying {drawn.height} images ({n_audited} of them the audit)")
        launch(workdir, settings, shortlist=drawn_all.select("id", "priority"))
        report = campaign_report(workdir, settings, collect(workdir, settings))
        require_complete(report)
        aggregated = _aggregated(workdir, settings)
        n_crowd = _learn(pool, store, aggregated)
        learned = True
        est = _audit(drawn, aggregated)
        crowd_conf = pool.confidence[pool.known & ~pool.points.labeled[pool.rows]]
        crowd_accuracy = float(crowd_conf.mean()) if len(crowd_conf) else 1.0
        spent = len(launched | set(drawn_all["id"].to_list()))
        decision = decide(
            est,
            n_gt=n_gt,
            n_crowd=n_crowd,
            crowd_accuracy=crowd_accuracy,
            n_auto=int((~pool.known).sum()),
            target=r.target,
            spent=spent,
            next_round=round_n + audit_n,
            budget=budget,
            round_index=index,
            max_rounds=r.max_rounds,
        )
        row = _round_row(
            index,
            drawn,
            spent,
            n_pool,
            report.cost,
            est,
            crowd_accuracy,
            decision.expected_low,
            decision.stop,
            decision.reason or "",
        )
        done = pl.concat([done, pl.DataFrame([row], schema=tables.ROUNDS)])
        tables.write(done, workdir.table("rounds"))
        interval = "no estimate" if est.low is None else f"{est.accuracy:.3f} [{est.low:.3f}, {est.high:.3f}]"
        ctx.echo(
            f"[crowd] round {index + 1}: {spent / n_pool:.1%} of the pool bought, automatic labels "
            f"{interval} by the audit of {est.n}; "
            + (f"stop: {STOP_REASONS[decision.reason or '']}" if decision.stop else "going on")
            + f" ({time.perf_counter() - started:.1f} s)"
        )
        stopped = decision.stop
        index += 1
    # The final automatic labels, with everything bought.
    answers = tables.read(workdir.table("answers"), tables.ANSWERS)
    if not learned and answers.filter(~pl.col("is_honeypot")).height:
        _learn(pool, store, _aggregated(workdir, settings))
    labels = _label_open(pool, store, settings, watch)
    open_rows = np.flatnonzero(~pool.known & pool.points.pool[pool.rows])
    tables.write(
        pl.DataFrame(
            {
                "id": pool.ids[open_rows],
                "auto_label": labels.label[open_rows],
                "certainty": labels.certainty[open_rows],
            },
            schema=tables.ROUND_LABELS,
        ),
        workdir.table("round_labels"),
    )
    if report is None:
        report = (
            campaign_report(workdir, settings, collect(workdir, settings))
            if (workdir.crowd / "campaign.json").exists()
            else skipped_report(settings)
        )
    last = done.row(-1, named=True) if done.height else {}
    return RoundsReport(
        **{f: getattr(report, f) for f in CampaignReport.__dataclass_fields__},
        rounds=done.height,
        stop_reason=str(last.get("reason", "")),
        share=float(last.get("share", 0.0)),
        audit_accuracy=last.get("audit_accuracy"),
        audit_low=last.get("audit_low"),
        audit_high=last.get("audit_high"),
        expected_low=last.get("expected_low"),
        auto=len(open_rows),
        per_round=done.to_dicts(),
    )


__all__ = ["KNOWN", "RoundsReport", "run_rounds"]
