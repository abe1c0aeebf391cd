"""Propagation: label every image still without a label by kNN over the final labeled set.

1. The final dataset (:func:`iris.final.build_final`: gt > crowd > auto) is written into
   the store's payload (``label``, ``has_label``, ``origin``), so a Qdrant filter selects
   exactly the labeled points; ``status`` keeps the image's pipeline state.
2. A small cross-validated search picks k × weighting × metric. The kNN runs as Qdrant
   queries: each labeled point is queried once with a generous ``k`` among the labeled
   points; the k-fold logic is then done in numpy by dropping, per query, the point itself
   and every neighbour in the query's own fold (they are "unseen" in that fold), and
   voting with the first ``k`` that remain. One round of queries serves every fold and
   every candidate, so the search costs one batch of queries.
3. Every unlabeled non-test image is queried with the chosen ``k`` and labeled by the
   vote (origin ``propagated``, confidence = the winning vote share).

Neighbour lists, metrics, weightings, the exact-match rule, the vote and the folds are
:mod:`iris.neighbours`, shared with the pseudolabel ensemble.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from iris import tables
from iris.config import PropagateSettings, Settings
from iris.contract import StageContext, StageReport
from iris.errors import PoolExhaustedError
from iris.final import build_final, count
from iris.neighbours import (
    NO_LABEL,
    Metric,
    Neighbours,
    Weighting,
    assign_folds,
    neighbours_from_hits,
    vote,
)
from iris.stagekit import CLUSTERED_SPLITS, exact_search, query_by_id, store_distance
from iris.store.base import Filter, VectorStore
from iris.tables import FINAL_LABELS, IMAGES, Origin, Split
from iris.workdir import Workdir

LABELED_ORIGINS: tuple[str, ...] = (Origin.GT.value, Origin.CROWD.value, Origin.AUTO.value)
HUMAN_ORIGINS: tuple[str, ...] = (Origin.GT.value, Origin.CROWD.value)
LABELED = Filter(must={"has_label": True, "origin": list(LABELED_ORIGINS), "split": list(CLUSTERED_SPLITS)})
"""Points the kNN fits on: the final labeled set (never earlier propagated labels)."""


@dataclass(frozen=True)
class CvResult:
    k: int
    weighting: str
    metric: str
    accuracy: float
    """Accuracy over every labeled point that had a neighbour outside its fold."""
    accuracy_human: float | None
    """The same over gt and crowd labels only (automatic labels come from a kNN too)."""
    evaluated: int


@dataclass
class PropagateReport(StageReport):
    k: int
    weighting: str
    metric: str
    cv_accuracy: float
    cv_accuracy_human: float | None
    folds: int
    labeled: dict[str, int]
    conflicts: dict[str, int]
    propagated: int
    propagated_positive: int
    not_in_store: int
    final_labels: str
    seconds: float
    grid: list[dict[str, object]] = field(default_factory=list)


def cross_validate(
    ids: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int8],
    human: npt.NDArray[np.bool_],
    neighbours: Neighbours,
    *,
    ks: Sequence[int],
    weightings: Sequence[Weighting],
    metrics: Sequence[Metric],
    folds: int,
    seed: int,
) -> list[CvResult]:
    """k-fold accuracy of every (k, weighting, metric) from one set of neighbour lists.

    Args:
        ids: (n,) the labeled points, in query order.
        labels: (n,) their labels.
        human: (n,) True for gt and crowd labels.
        neighbours: each labeled point's neighbours among the labeled points (itself included).
        folds: number of folds; a neighbour in the query's fold does not vote.
    """
    if len(ids) < folds:
        raise PoolExhaustedError(
            f"propagation needs at least {folds} labeled images (folds), found {len(ids)}"
        )
    fold = assign_folds(len(ids), folds, seed)
    order = np.argsort(ids)
    position = np.searchsorted(ids[order], neighbours.ids)
    position = np.clip(position, 0, len(ids) - 1)
    known = ids[order][position] == neighbours.ids
    index = np.where(known, order[position], -1)
    valid = known & (index >= 0) & (fold[np.maximum(index, 0)] != fold[:, None])
    # Each neighbour votes with its label in the final set, in the order of ``ids``.
    voters = Neighbours(
        ids=neighbours.ids,
        labels=np.where(valid, labels[np.maximum(index, 0)], NO_LABEL).astype(np.int64),
        similarity=neighbours.similarity,
    )
    prior = int(labels.mean() > 0.5)
    results = []
    for metric in metrics:
        for weighting in weightings:
            for k in ks:
                result = vote(voters, k=k, weighting=weighting, metric=metric, valid=valid)
                pred, has_vote = result.label(prior=prior), result.has_vote
                correct = (pred == labels) & has_vote
                human_seen = has_vote & human
                results.append(
                    CvResult(
                        k=k,
                        weighting=weighting,
                        metric=metric,
                        accuracy=float(correct.sum() / max(has_vote.sum(), 1)),
                        accuracy_human=float(correct[human].sum() / human_seen.sum())
                        if human_seen.any()
                        else None,
                        evaluated=int(has_vote.sum()),
                    )
                )
    return results


def best(results: Sequence[CvResult]) -> CvResult:
    """Highest accuracy; ties go to the earliest candidate in grid order."""
    return max(results, key=lambda r: r.accuracy)  # max keeps the first of equal keys


def _query(
    store: VectorStore, ids: Sequence[int], *, k: int, batch_size: int, exact: bool, desc: str
) -> tuple[npt.NDArray[np.int64], Neighbours]:
    """Neighbours among the labeled points of each stored point in ``ids``.

    Returns the ids actually found in the store (in the order given) and their neighbours.
    """
    found, hits = query_by_id(store, ids, k=k, flt=LABELED, batch_size=batch_size, exact=exact, desc=desc)
    return found, neighbours_from_hits(hits, k=k, distance=store_distance(store))


def _write_labeled_payload(store: VectorStore, final: pl.DataFrame, batch_size: int) -> None:
    """Put the final labels into the payload; un-flag points the final set no longer labels."""
    labeled_ids = set(final["id"].to_list())
    stale = store.ids(LABELED) - labeled_ids
    if stale:
        store.set_payload({i: {"has_label": False, "origin": None} for i in stale})
    stored = store.ids()
    updates = {
        int(i): {"label": int(label), "has_label": True, "origin": origin}
        for i, label, origin in final.select("id", "label", "origin").iter_rows()
        if int(i) in stored
    }
    items = list(updates.items())
    for start in range(0, len(items), batch_size * 8):
        store.set_payload(dict(items[start : start + batch_size * 8]))


def propagate(workdir: Workdir, settings: Settings, store: VectorStore) -> PropagateReport:
    """Build the final dataset, pick kNN parameters by k-fold CV, label the rest of the pool.

    Writes ``tables/final_labels.parquet`` (FINAL_LABELS: gt, crowd, auto and propagated
    rows), ``tables/final_conflicts.parquet`` (:data:`iris.final.FINAL_CONFLICTS`) and the
    payload (``label``, ``has_label``, ``origin``) of every labeled point. Deterministic for
    a seed; re-running recomputes from the tables and overwrites (never the ground truth).

    Raises:
        PoolExhaustedError: fewer labeled images in the store than folds.
    """
    start_time = time.perf_counter()
    cfg: PropagateSettings = settings.propagate
    final, conflicts = build_final(workdir, rounds=settings.rounds.loop)
    tables.write(conflicts, workdir.table("final_conflicts"))
    _write_labeled_payload(store, final, cfg.batch_size)
    exact = exact_search(store, cfg.exact, settings.store.exact_max_points)

    # Cross-validation: every labeled point's neighbours among the labeled points, fetched
    # once with a k large enough that max(ks) remain after dropping itself and its fold
    # (about 1/folds of them), with a 50% margin.
    max_k = max(cfg.ks)
    fetch_k = math.ceil((max_k + 1) * cfg.folds / max(cfg.folds - 1, 1) * 1.5) + 5
    labeled_ids = final["id"].to_numpy()
    cv_ids, cv_neighbours = _query(
        store,
        labeled_ids.tolist(),
        k=fetch_k,
        batch_size=cfg.batch_size,
        exact=exact,
        desc="propagate: cv queries",
    )
    # Rows must stay in query order (labels align with cv_ids): polars keeps no join order unless told.
    cv_rows = pl.DataFrame({"id": cv_ids}, schema={"id": pl.Int64}).join(
        final, on="id", how="left", maintain_order="left"
    )
    results = cross_validate(
        cv_ids,
        cv_rows["label"].to_numpy().astype(np.int8),
        cv_rows["origin"].is_in(list(HUMAN_ORIGINS)).to_numpy(),
        cv_neighbours,
        ks=cfg.ks,
        weightings=list(cfg.weightings),  # type: ignore[arg-type]
        metrics=list(cfg.metrics),  # type: ignore[arg-type]
        folds=cfg.folds,
        seed=cfg.seed,
    )
    chosen = best(results)

    # Propagation: every non-test image the final set does not label.
    images = tables.read(workdir.table("images"), IMAGES)
    targets = (
        images.filter(pl.col("split") != Split.TEST.value)
        .join(final, on="id", how="anti")
        .sort("id")["id"]
        .to_list()
    )
    # The crowd rounds label every pool image themselves: then nothing is left to propagate.
    found: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
    propagated = pl.DataFrame(schema=FINAL_LABELS)
    if targets:
        found, neighbours = _query(
            store, targets, k=chosen.k, batch_size=cfg.batch_size, exact=exact, desc="propagate: labeling"
        )
        prior = int(final["label"].mean() > 0.5) if final.height else 0  # type: ignore[operator]
        chosen_vote = vote(
            neighbours,
            k=chosen.k,
            weighting=chosen.weighting,  # type: ignore[arg-type]
            metric=chosen.metric,  # type: ignore[arg-type]
        )
        label = chosen_vote.label(prior=prior).astype(np.int8)
        share = np.where(chosen_vote.has_vote, chosen_vote.best, 0.5)
        propagated = pl.DataFrame(
            {
                "id": found,
                "label": label,
                "origin": [Origin.PROPAGATED.value] * len(found),
                "confidence": share,
            },
            schema=FINAL_LABELS,
        )
    for begin in range(0, propagated.height, cfg.batch_size * 8):
        chunk = propagated.slice(begin, cfg.batch_size * 8)
        store.set_payload(
            {
                int(i): {"label": int(lab), "has_label": True, "origin": Origin.PROPAGATED.value}
                for i, lab in chunk.select("id", "label").iter_rows()
            }
        )
    result = pl.concat([final, propagated]).sort("id")
    path = tables.write(
        tables.check(result, FINAL_LABELS, where="final_labels"), workdir.table("final_labels")
    )
    counts = count(final, conflicts)
    return PropagateReport(
        k=chosen.k,
        weighting=chosen.weighting,
        metric=chosen.metric,
        cv_accuracy=round(chosen.accuracy, 4),
        cv_accuracy_human=None if chosen.accuracy_human is None else round(chosen.accuracy_human, 4),
        folds=cfg.folds,
        labeled={"gt": counts.gt, "crowd": counts.crowd, "auto": counts.auto},
        conflicts=counts.conflicts,
        propagated=propagated.height,
        propagated_positive=int(propagated["label"].sum() or 0),
        not_in_store=len(targets) - len(found),
        final_labels=str(path),
        seconds=round(time.perf_counter() - start_time, 2),
        grid=[
            {
                "k": r.k,
                "weighting": r.weighting,
                "metric": r.metric,
                "accuracy": round(r.accuracy, 4),
                "accuracy_human": None if r.accuracy_human is None else round(r.accuracy_human, 4),
            }
            for r in results
        ],
    )


def run(ctx: StageContext) -> PropagateReport:
    """The propagate stage (:func:`propagate` over ``ctx.store``)."""
    return propagate(ctx.workdir, ctx.settings, ctx.store)
