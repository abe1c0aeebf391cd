"""The pseudolabel stage: kNN ensemble over Qdrant + seeded KMeans + consensus.

Reads the vectors and payloads from the store, writes ``tables/pseudolabels.parquet``
(:data:`iris.tables.PSEUDOLABELS`) for every unlabeled pool image and
``tables/member_votes.parquet`` (``id`` + one Int8 column per member, null when that
member was not confident). The store is only read: a payload write would move every pool
point out of its HNSW segment, and re-indexing a million of them costs more than the
stage (statuses are read from the tables: :mod:`iris.statuses`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from iris.config import Settings
from iris.contract import StageContext, StageReport
from iris.errors import InputError, StageOrderError
from iris.neighbours import NO_LABEL, neighbours_from_hits
from iris.pseudolabel.consensus import AUTO, consensus
from iris.pseudolabel.estimate import Estimate, kfold_cluster_labels, leave_one_out
from iris.pseudolabel.kmeans import SeededKMeans, normalise
from iris.pseudolabel.knn import EnsembleVotes, ensemble_vote
from iris.pseudolabel.members import parse_members
from iris.stagekit import (
    CLUSTERED_SPLITS,
    HITS_CHUNK,
    LABELED,
    N_CLASSES,
    Points,
    Stopwatch,
    batched_query,
    exact_search,
    read_points,
    store_distance,
)
from iris.store.base import Distance, VectorStore
from iris.tables import PSEUDOLABELS, check, member_votes_schema, write
from iris.workdir import Workdir


@dataclass(frozen=True)
class PseudolabelReport(StageReport):
    """Counts and timings of one pseudolabel run (fractions are of the pool)."""

    pool: int
    labeled: int
    auto: int
    problematic: int
    members: list[str]
    estimate_n: int
    estimate_auto: int
    estimate_accuracy: float | None
    estimate_low: float | None
    estimate_high: float | None
    estimate_knn_accuracy: float | None
    estimate_method: str
    seconds: float
    qdrant_seconds: float
    auto_fraction: float = 0.0
    problematic_fraction: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def pseudolabel(workdir: Workdir, settings: Settings, store: VectorStore) -> PseudolabelReport:
    """Label the unlabeled pool automatically where the ensemble and the clustering agree.

    Raises:
        StageOrderError: the store is empty or holds fewer than two labeled points.
        InputError: the labeled points are all of one class.
    """
    started = time.perf_counter()
    s = settings.pseudolabel
    members = parse_members(s.members)
    watch = Stopwatch()
    with watch.phase("export"):
        points = read_points(store, watch)
    n_labeled = int(points.labeled.sum())
    if n_labeled < 2:
        raise StageOrderError(
            f"the store holds {n_labeled} labeled point(s) (split gt/pool with a label), "
            "expected at least 2; "
            "ingest a ground-truth manifest and run `iris embed`"
        )
    labeled_rows = np.flatnonzero(points.labeled)
    per_class = np.bincount(points.labels[labeled_rows], minlength=N_CLASSES)
    if (per_class == 0).any():
        # Every neighbour would vote for the one class: the pool would be "labeled" by it alone
        # and the leave-one-out estimate would read 1.0.
        raise InputError(
            f"the ground truth holds {n_labeled} labeled images: {per_class[0]} of class 0 "
            f"({settings.task.negative_name}) and {per_class[1]} of class 1 ({settings.task.positive_name}); "
            "the kNN ensemble needs labeled images of both classes: add some to the ground-truth manifest"
        )
    distance = store_distance(store)
    vectors = normalise(points.exported.vectors)
    pool_rows = np.flatnonzero(points.pool)
    k_max = max(m.k for m in members)
    exact = exact_search(store, s.exact, settings.store.exact_max_points)
    # The hits come without payloads; the labeled points' labels are known here already.
    label_of = dict(
        zip(points.exported.ids[labeled_rows].tolist(), points.labels[labeled_rows].tolist(), strict=True)
    )

    # One batched query per image with the largest k serves every member: each member
    # slices its first k, and metrics differ only in how scores become distances.
    with watch.phase("knn"):
        # Hits are Python objects: a million images' neighbour lists at once would take GiBs,
        # so they are voted on and dropped a chunk at a time.
        parts = []
        for start in range(0, max(len(pool_rows), 1), HITS_CHUNK):
            hits = batched_query(
                store,
                vectors[pool_rows[start : start + HITS_CHUNK]],
                k=k_max,
                flt=LABELED,
                batch_size=s.batch_size,
                exact=exact,
                desc="kNN ensemble",
                watch=watch,
                with_payload=False,
            )
            parts.append(
                ensemble_vote(
                    neighbours_from_hits(hits, k=k_max, distance=distance, label_of=label_of),
                    members,
                    confidence=s.confidence,
                    quorum=s.quorum,
                    n_classes=N_CLASSES,
                    distance=distance,
                )
            )
        votes = EnsembleVotes(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(EnsembleVotes))
        )

    clustered_rows = np.flatnonzero(np.isin(points.split, CLUSTERED_SPLITS))
    cluster = np.full(len(pool_rows), -1, dtype=np.int64)
    cluster_label: npt.NDArray[np.int64] | None = None
    with watch.phase("kmeans"):
        if s.use_kmeans:
            model = SeededKMeans(max_iter=s.kmeans_max_iter, random_state=s.seed).fit(
                vectors[clustered_rows], vectors[labeled_rows], points.labels[labeled_rows]
            )
            position = np.full(len(points.split), -1, dtype=np.int64)
            position[clustered_rows] = np.arange(len(clustered_rows))
            cluster = model.labels_[position[pool_rows]]
            cluster_label = model.cluster_labels_[cluster]

    auto_label, status = consensus(votes.knn_label, cluster_label)
    ids = points.exported.ids[pool_rows]
    _write_tables(workdir, ids, votes.knn_label, votes.knn_share, cluster, cluster_label, auto_label, status)
    _write_member_votes(workdir, ids, [m.name for m in members], votes.member_labels)

    with watch.phase("estimate"):
        estimate = _estimate(
            store, points, vectors, labeled_rows, clustered_rows, settings, distance, watch, exact=exact
        )

    n_auto = int((status == AUTO).sum())
    n_pool = len(pool_rows)
    return PseudolabelReport(
        pool=n_pool,
        labeled=n_labeled,
        auto=n_auto,
        problematic=n_pool - n_auto,
        members=[m.name for m in members],
        estimate_n=estimate.n if estimate else 0,
        estimate_auto=estimate.n_auto if estimate else 0,
        estimate_accuracy=estimate.accuracy if estimate else None,
        estimate_low=estimate.low if estimate else None,
        estimate_high=estimate.high if estimate else None,
        estimate_knn_accuracy=estimate.knn_accuracy if estimate else None,
        estimate_method=estimate.method if estimate else "off",
        seconds=time.perf_counter() - started,
        qdrant_seconds=watch.seconds,
        auto_fraction=n_auto / n_pool if n_pool else 0.0,
        problematic_fraction=(n_pool - n_auto) / n_pool if n_pool else 0.0,
        timings=watch.timings(),
    )


def run(ctx: StageContext) -> PseudolabelReport:
    """The pseudolabel stage (:func:`pseudolabel` over ``ctx.store``)."""
    return pseudolabel(ctx.workdir, ctx.settings, ctx.store)


def _estimate(
    store: VectorStore,
    points: Points,
    vectors: npt.NDArray[np.float32],
    labeled_rows: npt.NDArray[np.int64],
    clustered_rows: npt.NDArray[np.int64],
    settings: Settings,
    distance: Distance,
    watch: Stopwatch,
    *,
    exact: bool,
) -> Estimate | None:
    s = settings.pseudolabel
    if s.estimate_folds == 0:
        return None
    members = parse_members(s.members)
    k_max = max(m.k for m in members)
    # k_max + 1: the image itself comes back first and is dropped.
    # Evaluate only labeled images the backbone did not fine-tune on, when the payload says.
    finetuned = np.array([points.exported.payloads[r].get("finetune") == "train" for r in labeled_rows], bool)
    heldout_classes = np.unique(points.labels[labeled_rows[~finetuned]])
    evaluated = ~finetuned if len(heldout_classes) == N_CLASSES else np.ones(len(labeled_rows), bool)
    hits = batched_query(
        store,
        vectors[labeled_rows[evaluated]],
        k=k_max + 1,
        flt=LABELED,
        batch_size=s.batch_size,
        exact=exact,
        desc="leave-one-out",
        watch=watch,
    )
    labels = points.labels[labeled_rows]
    cluster_labels = None
    if s.use_kmeans:
        position = np.full(len(points.split), -1, dtype=np.int64)
        position[clustered_rows] = np.arange(len(clustered_rows))
        cluster_labels = kfold_cluster_labels(
            vectors[clustered_rows],
            position[labeled_rows],
            labels,
            folds=s.estimate_folds,
            seed=s.seed,
            max_iter=s.kmeans_max_iter,
        )
    estimate = leave_one_out(
        hits,
        points.exported.ids[labeled_rows[evaluated]].tolist(),
        labels[evaluated],
        members,
        confidence=s.confidence,
        quorum=s.quorum,
        cluster_labels=None if cluster_labels is None else cluster_labels[evaluated],
        n_classes=N_CLASSES,
        distance=distance,
    )
    if not evaluated.all():
        estimate = replace(estimate, method=estimate.method + ", on labels the fine-tune held out")
    elif finetuned.any():
        estimate = replace(
            estimate, method=estimate.method + ", on labels the backbone was tuned on: optimistic"
        )
    return estimate


def _nullable(values: npt.NDArray[np.int64]) -> list[int | None]:
    return [None if v == NO_LABEL else int(v) for v in values.tolist()]


def _write_tables(
    workdir: Workdir,
    ids: npt.NDArray[np.int64],
    knn_label: npt.NDArray[np.int64],
    knn_share: npt.NDArray[np.float64],
    cluster: npt.NDArray[np.int64],
    cluster_label: npt.NDArray[np.int64] | None,
    auto_label: npt.NDArray[np.int64],
    status: npt.NDArray[np.str_],
) -> None:
    frame = pl.DataFrame(
        {
            "id": ids,
            "knn_label": _nullable(knn_label),
            "knn_share": knn_share,
            "cluster": [None if c < 0 else int(c) for c in cluster.tolist()],
            "cluster_label": [None] * len(ids) if cluster_label is None else _nullable(cluster_label),
            "auto_label": _nullable(auto_label),
            "status": status.astype(str).tolist(),
        },
        schema_overrides=PSEUDOLABELS,  # type: ignore[arg-type]
    )
    write(check(frame, PSEUDOLABELS, where="pseudolabels"), workdir.table("pseudolabels"))


def _write_member_votes(
    workdir: Workdir, ids: npt.NDArray[np.int64], names: list[str], member_labels: npt.NDArray[np.int64]
) -> None:
    data: dict[str, Any] = {"id": ids}
    for j, name in enumerate(names):
        data[name] = _nullable(member_labels[:, j])
    frame = pl.DataFrame(data, schema=member_votes_schema(names))
    write(frame, workdir.table("member_votes"))
