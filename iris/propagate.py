"""Propagation: label every image still without a label by kNN over the final labeled set.

1. The final dataset (:func:`iris.final.build_final`: gt > crowd > auto) is written into
   the store's payload (``label``, ``has_label``, ``status`` = origin), so a Qdrant filter
   selects exactly the labeled points.
2. A small cross-validated search picks k × weighting × metric. The kNN runs as Qdrant
   queries: each labeled point is queried once with a generous ``k`` among the labeled
   points; the k-fold logic is then done in numpy by dropping, per query, the point itself
   and every neighbour in the query's own fold (they are "unseen" in that fold), and
   voting with the first ``k`` that remain. One round of queries serves every fold and
   every candidate, so the search costs one batch of queries.
3. Every unlabeled non-test image is queried with the chosen ``k`` and labeled by the
   vote (origin ``propagated``, confidence = the winning vote share).

Metrics: the collection holds L2-normalised vectors with cosine distance, so Qdrant's
score ``s`` is the cosine similarity. Cosine and Euclidean rank neighbours identically on
such vectors; they differ only in the distance used for weighting: ``1 - s`` (cosine) or
``sqrt(2 - 2 s)`` (Euclidean).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import polars as pl

from iris import tables
from iris.config import PropagateSettings, Settings
from iris.errors import ConfigError, PoolExhaustedError
from iris.final import build_final, count
from iris.progress import bar
from iris.store.base import Filter, VectorStore
from iris.tables import FINAL_LABELS, IMAGES
from iris.workdir import Workdir

Weighting = Literal["uniform", "distance"]
Metric = Literal["cosine", "euclid"]
LABELED_STATUSES: tuple[str, ...] = ("gt", "crowd", "auto")
LABELED = Filter(must={"has_label": True, "status": list(LABELED_STATUSES), "split": ["gt", "pool"]})
"""Points the kNN fits on: the final labeled set (never earlier propagated labels)."""


@dataclass(frozen=True)
class Neighbours:
    """Neighbour lists of a batch of queries, best first, padded with id -1.

    Attributes:
        ids: (n, K) neighbour ids, -1 where fewer than K were found.
        scores: (n, K) cosine similarities.
    """

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


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
class PropagateReport:
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


def distances(scores: npt.NDArray[np.float64], metric: Metric) -> npt.NDArray[np.float64]:
    """Distances from cosine similarities (see the module docstring)."""
    if metric == "cosine":
        return 1.0 - scores
    if metric == "euclid":
        return np.sqrt(np.clip(2.0 - 2.0 * scores, 0.0, None))
    raise ConfigError(f"propagate.metrics: got {metric!r}, expected one of {', '.join(get_args(Metric))}")


def vote(
    neighbour_labels: npt.NDArray[np.int8],
    neighbour_distances: npt.NDArray[np.float64],
    valid: npt.NDArray[np.bool_],
    *,
    k: int,
    weighting: Weighting,
    prior: int = 0,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Binary kNN vote with the first ``k`` valid neighbours of each row.

    Args:
        neighbour_labels: (n, K) labels 0/1 of the neighbours, best first.
        neighbour_distances: (n, K) their distances.
        valid: (n, K) which neighbours may vote.
        k: neighbours per vote; rows with fewer valid ones vote with what they have.
        weighting: ``uniform`` or ``distance`` (weight 1 / distance).
        prior: label of an exact tie.

    Returns:
        ``(label, share, has_vote)``, each (n,): the label, its vote share, and whether
        the row had any valid neighbour (label = prior and share 0.5 otherwise).
    """
    if weighting not in get_args(Weighting):
        raise ConfigError(
            f"propagate.weightings: got {weighting!r}, expected one of {', '.join(get_args(Weighting))}"
        )
    use = valid & (np.cumsum(valid, axis=1) <= k)
    if weighting == "uniform":
        weights = use.astype(np.float64)
    else:
        # An exact duplicate (distance 0) would get an infinite weight; 1e-6 keeps it finite
        # while still letting it dominate.
        weights = np.where(use, 1.0 / (neighbour_distances + 1e-6), 0.0)
    total = weights.sum(axis=1)
    positive = (weights * (neighbour_labels == 1)).sum(axis=1)
    has_vote = total > 0
    share_pos = np.where(has_vote, positive / np.where(has_vote, total, 1.0), 0.5)
    label = np.where(share_pos > 0.5, 1, np.where(share_pos < 0.5, 0, prior)).astype(np.int8)
    share = np.maximum(share_pos, 1.0 - share_pos)
    return label, share, has_vote


def assign_folds(n: int, folds: int, seed: int) -> npt.NDArray[np.int64]:
    """A random, balanced fold number in ``[0, folds)`` for each of ``n`` points."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % folds)


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
    neighbour_labels = np.where(valid, labels[np.maximum(index, 0)], 0).astype(np.int8)
    prior = int(labels.mean() > 0.5)
    results = []
    for metric in metrics:
        dist = distances(neighbours.scores, metric)
        for weighting in weightings:
            for k in ks:
                pred, _share, has_vote = vote(
                    neighbour_labels, dist, valid, k=k, weighting=weighting, prior=prior
                )
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
    store: VectorStore, ids: Sequence[int], *, k: int, batch_size: int, desc: str
) -> tuple[npt.NDArray[np.int64], Neighbours]:
    """Neighbours among the labeled points of each stored point in ``ids``.

    Returns the ids actually found in the store (in the order given) and their neighbours.
    """
    found: list[int] = []
    # Scores are turned into cosine similarities whatever the collection's distance
    # (iris creates cosine collections; a Euclidean one reports d, and on normalised
    # vectors cos = 1 - d^2 / 2).
    distance_of = getattr(store, "distance", None)
    collection_distance = distance_of() if callable(distance_of) else "cosine"
    all_ids = np.full((len(ids), k), -1, dtype=np.int64)
    all_scores = np.full((len(ids), k), -np.inf, dtype=np.float64)
    progress = bar(desc=desc, total=len(ids), unit="img")
    row = 0
    for start in range(0, len(ids), batch_size):
        points = store.retrieve(list(ids[start : start + batch_size]), with_vectors=True)
        progress.update(min(batch_size, len(ids) - start))
        if not points:
            continue
        vectors = np.stack([np.asarray(v, dtype=np.float32) for _, _, v in points])
        hits = store.query_batch(vectors, k=k, flt=LABELED)
        for (point_id, _, _), point_hits in zip(points, hits, strict=True):
            found.append(int(point_id))
            for j, hit in enumerate(point_hits[:k]):
                all_ids[row, j] = hit.id
                all_scores[row, j] = (
                    1.0 - hit.score**2 / 2.0 if collection_distance == "euclid" else hit.score
                )
            row += 1
    progress.close()
    return np.asarray(found, dtype=np.int64), Neighbours(ids=all_ids[:row], scores=all_scores[:row])


def _write_labeled_payload(store: VectorStore, final: pl.DataFrame, batch_size: int) -> None:
    """Put the final labels into the payload; un-flag points the final set no longer labels."""
    labeled_ids = set(final["id"].to_list())
    stale = store.ids(LABELED) - labeled_ids
    if stale:
        store.set_payload({i: {"has_label": False} for i in stale})
    stored = store.ids()
    updates = {
        int(i): {"label": int(label), "has_label": True, "status": origin}
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
    payload (``label``, ``has_label``, ``status``) of every labeled point. Deterministic for
    a seed; re-running recomputes from the tables and overwrites (never the ground truth).

    Raises:
        PoolExhaustedError: fewer labeled images in the store than folds.
    """
    start_time = time.perf_counter()
    cfg: PropagateSettings = settings.propagate
    final, conflicts = build_final(workdir)
    tables.write(conflicts, workdir.table("final_conflicts"))
    _write_labeled_payload(store, final, cfg.batch_size)

    # Cross-validation: every labeled point's neighbours among the labeled points, fetched
    # once with a k large enough that max(ks) remain after dropping itself and its fold
    # (about 1/folds of them), with a 50% margin.
    max_k = max(cfg.ks)
    fetch_k = math.ceil((max_k + 1) * cfg.folds / max(cfg.folds - 1, 1) * 1.5) + 5
    labeled_ids = final["id"].to_numpy()
    cv_ids, cv_neighbours = _query(
        store, labeled_ids.tolist(), k=fetch_k, batch_size=cfg.batch_size, desc="propagate: cv queries"
    )
    cv_rows = pl.DataFrame({"id": cv_ids}, schema={"id": pl.Int64}).join(final, on="id", how="left")
    results = cross_validate(
        cv_ids,
        cv_rows["label"].to_numpy().astype(np.int8),
        cv_rows["origin"].is_in(["gt", "crowd"]).to_numpy(),
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
        images.filter(pl.col("split") != "test").join(final, on="id", how="anti").sort("id")["id"].to_list()
    )
    found, neighbours = _query(
        store, targets, k=chosen.k, batch_size=cfg.batch_size, desc="propagate: labeling"
    )
    valid = neighbours.ids >= 0
    label_of = dict(zip(final["id"].to_list(), final["label"].to_list(), strict=True))
    neighbour_labels = np.vectorize(lambda i: label_of.get(int(i), 0), otypes=[np.int8])(neighbours.ids)
    prior = int(final["label"].mean() > 0.5) if final.height else 0  # type: ignore[operator]
    label, share, _ = vote(
        neighbour_labels,
        distances(neighbours.scores, chosen.metric),  # type: ignore[arg-type]
        valid,
        k=chosen.k,
        weighting=chosen.weighting,  # type: ignore[arg-type]
        prior=prior,
    )
    propagated = pl.DataFrame(
        {"id": found, "label": label, "origin": ["propagated"] * len(found), "confidence": share},
        schema=FINAL_LABELS,
    )
    for begin in range(0, propagated.height, cfg.batch_size * 8):
        chunk = propagated.slice(begin, cfg.batch_size * 8)
        store.set_payload(
            {
                int(i): {"label": int(lab), "has_label": True, "status": "propagated"}
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
