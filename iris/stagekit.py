"""What stages share over the vector store: reading points, batched queries, timings.

Stages never import each other; what two of them need lives here (and the kNN rules in
:mod:`iris.neighbours`, the tables in :mod:`iris.tables`).

* :func:`read_points`: every point, split into labeled / pool / the rest (:class:`Points`);
* :func:`batched_query`: ``query_batch`` over many vectors, a batch at a time, with a bar;
* :func:`query_by_id`: retrieve stored points by id, then query with their vectors;
* :func:`exact_search`: whether a stage's ``exact`` searches stay exhaustive at this store's size;
* :class:`Stopwatch`: seconds spent in the store, and wall seconds per phase of a stage;
* :func:`launched_tasks`: how many tasks the crowd campaign of the work directory was launched
  with (crowd and aggregate both skip when the crowd had nothing to do).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from iris.errors import ConfigError, StageOrderError, StoreError
from iris.neighbours import NO_LABEL
from iris.progress import bar
from iris.store.base import Distance, Exported, Filter, Hit, VectorStore
from iris.tables import Origin, Split
from iris.workdir import Workdir

N_CLASSES = 2
CLUSTERED_SPLITS: tuple[str, ...] = (Split.GT.value, Split.POOL.value)
"""Splits that vote, cluster and neighbour: never a test image."""
LATER_ORIGINS: tuple[str, ...] = (Origin.CROWD.value, Origin.AUTO.value, Origin.PROPAGATED.value)
"""Origins of labels the pipeline gave (propagate writes them into the payload): not ground truth."""
LABELED = Filter(
    must={"has_label": True, "split": list(CLUSTERED_SPLITS)}, must_not={"origin": list(LATER_ORIGINS)}
)
"""The points kNN members vote with: the ground truth (a label with no origin, as embed writes
it, or origin ``gt``), never a test image nor a label the crowd, pseudolabel or propagation
gave: a re-run of pseudolabel after propagate must see what a fresh run sees."""
HITS_CHUNK = 32_768
"""Query images whose hit lists are held at once (pseudolabel and select): a million images'
neighbour lists as Python objects would take GiBs."""


@dataclass
class Stopwatch:
    """Seconds spent inside the vector store, summed over calls, and seconds per phase."""

    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Count the block as time in the store."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the block's wall time under ``name`` (added up when repeated)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    def timings(self) -> dict[str, float]:
        """Seconds per phase, rounded to milliseconds, for a report."""
        return {name: round(seconds, 3) for name, seconds in self.phases.items()}


@dataclass(frozen=True)
class Points:
    """The store's points split by role, rows aligned with ``exported``.

    Only ground-truth labels count (see :data:`LABELED`): after propagate every pool point
    carries a label in its payload, and those crowd, automatic and propagated labels are
    what the stages compute, never what they start from.
    """

    exported: Exported
    split: npt.NDArray[np.str_]
    labels: npt.NDArray[np.int64]  # the ground-truth label, NO_LABEL otherwise
    labeled: npt.NDArray[np.bool_]  # a ground-truth label and not a test image
    pool: npt.NDArray[np.bool_]  # split == "pool" without a ground-truth label: what gets pseudo-labeled


def read_points(store: VectorStore, watch: Stopwatch) -> Points:
    """Export the store and sort its points into ground truth, pool and the rest.

    Raises:
        StageOrderError: the store is empty.
        StoreError: a label that is not a class.
    """
    with watch.timing():
        exported = store.export()
    if len(exported.ids) == 0:
        raise StageOrderError("the vector store holds no points; run `iris embed` first")
    split = np.array([str(p.get("split", "")) for p in exported.payloads])
    labels = np.full(len(exported.ids), NO_LABEL, dtype=np.int64)
    for row, payload in enumerate(exported.payloads):
        label = payload.get("label")
        if label is None or not payload.get("has_label", True) or payload.get("origin") in LATER_ORIGINS:
            continue
        if int(label) not in range(N_CLASSES) or float(label) != int(label):
            raise StoreError(f"point {exported.ids[row]}: payload label {label!r}, expected 0 or 1")
        labels[row] = int(label)
    has_label = labels != NO_LABEL
    labeled = has_label & np.isin(split, CLUSTERED_SPLITS)
    pool = (split == Split.POOL.value) & ~has_label
    return Points(exported=exported, split=split, labels=labels, labeled=labeled, pool=pool)


def store_distance(store: VectorStore) -> Distance:
    """The collection's distance when the store says (Edge and server do), else cosine."""
    getter = getattr(store, "distance", None)
    value = getter() if callable(getter) else None
    return value or "cosine"


def exact_search(store: VectorStore, wanted: bool, max_points: int) -> bool:
    """Whether searches a stage asks to be exact (``wanted``) run exhaustively on ``store``.

    Exhaustive while the collection holds at most ``max_points`` points (``store.exact_max_points``;
    0: no limit), HNSW past it: over a million points an exhaustive neighbour search of every
    image is about 10^12 distance terms, hours on two cores.
    """
    return wanted and (max_points == 0 or store.count() <= max_points)


def batched_query(
    store: VectorStore,
    vectors: npt.NDArray[np.float32],
    *,
    k: int,
    flt: Filter | None,
    batch_size: int,
    exact: bool = False,
    desc: str,
    watch: Stopwatch | None = None,
    with_payload: bool = True,
) -> list[list[Hit]]:
    """``store.query_batch`` over ``vectors`` (n, dim), ``batch_size`` queries a call, with a progress bar.

    ``with_payload=False`` brings ids and scores only (what a neighbour count needs).
    ``exact=True`` searches exhaustively (reproducible); HNSW otherwise.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size: got {batch_size}, expected >= 1")
    watch = watch or Stopwatch()
    hits: list[list[Hit]] = []
    progress = bar(desc=desc, total=len(vectors), unit="img")
    try:
        for start in range(0, len(vectors), batch_size):
            chunk = vectors[start : start + batch_size]
            with watch.timing():
                hits.extend(store.query_batch(chunk, k=k, flt=flt, exact=exact, with_payload=with_payload))
            progress.update(len(chunk))
    finally:
        progress.close()
    return hits


def query_by_id(
    store: VectorStore,
    ids: Sequence[int],
    *,
    k: int,
    flt: Filter | None,
    batch_size: int,
    exact: bool = False,
    desc: str,
    watch: Stopwatch | None = None,
) -> tuple[npt.NDArray[np.int64], list[list[Hit]]]:
    """Retrieve the stored points of ``ids`` with their vectors and query with them.

    Returns the ids found in the store (in the order given; missing ones are skipped) and
    each one's ``k`` nearest points matching ``flt``, best first. ``exact`` as for
    :func:`batched_query`.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size: got {batch_size}, expected >= 1")
    watch = watch or Stopwatch()
    found: list[int] = []
    hits: list[list[Hit]] = []
    progress = bar(desc=desc, total=len(ids), unit="img")
    try:
        for start in range(0, len(ids), batch_size):
            with watch.timing():
                points = store.retrieve(list(ids[start : start + batch_size]), with_vectors=True)
            progress.update(min(batch_size, len(ids) - start))
            if not points:
                continue
            vectors = np.stack([np.asarray(v, dtype=np.float32) for _, _, v in points])
            with watch.timing():
                hits.extend(store.query_batch(vectors, k=k, flt=flt, exact=exact))
            found.extend(int(point_id) for point_id, _, _ in points)
    finally:
        progress.close()
    return np.asarray(found, dtype=np.int64), hits


def launched_tasks(workdir: Workdir) -> int | None:
    """Tasks of the crowd campaign launched in ``WORK/crowd`` (``campaign.json``), None when none was."""
    path = workdir.crowd / "campaign.json"
    if not path.exists():
        return None
    return int(json.loads(path.read_text(encoding="utf-8")).get("tasks", 0))
