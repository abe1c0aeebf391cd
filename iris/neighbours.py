"""Nearest neighbours and their vote: one set of rules for every kNN in iris.

The pseudolabel ensemble (:mod:`iris.pseudolabel.knn`), its leave-one-out estimate
(:mod:`iris.pseudolabel.estimate`) and propagation (:mod:`iris.propagate`) all read
Qdrant hits through :func:`neighbours_from_hits`, weigh them with :func:`weights` and
decide with :func:`vote`; the cross-validated estimates split points with
:func:`assign_folds`.

Scores, similarities, distances. iris stores L2-normalised vectors, so whatever the
collection's distance, a score becomes the cosine similarity ``s`` of the two vectors
(:func:`similarity_from_score`); on unit vectors cosine, dot and Euclidean distance rank
neighbours identically (``|a-b|² = 2 - 2·a·b``), so a metric only changes the distance a
``distance``-weighted vote divides by:

=========== ============================ ==========================================
metric      distance from similarity s   note
=========== ============================ ==========================================
cosine      ``1 - s``                    the default
dot         ``1 - s``                    same as cosine on unit vectors
euclid      ``sqrt(max(0, 2 - 2 s))``    weights ∝ 1/sqrt(cosine distance)
=========== ============================ ==========================================

Weightings: ``uniform`` (every neighbour 1) and ``distance`` (``1 / d``).

The exact-match rule (chosen on purpose): a neighbour at distance ``d <= EXACT`` (1e-6) is
the same picture, so when a row has one, its exact matches share all the weight and the
others get none, as in scikit-learn's ``KNeighborsClassifier``. ``EXACT`` is 1e-6 rather
than 0 because a duplicate's cosine read from float32 vectors is 1 only to about 1e-7; a
``1 / (d + ε)`` rule would instead let a float-noise "distance" decide how much a
duplicate outweighs the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from iris.errors import ConfigError, InputError
from iris.vocabulary import WEIGHTINGS, Metric, Weighting

if TYPE_CHECKING:
    from iris.store.base import Distance, Hit

FloatArray = npt.NDArray[np.float64]

NO_LABEL = -1
"""Label of padding and of an undecided vote."""
EXACT = 1e-6
"""Distances at or below this are exact matches (see the module docstring)."""


def _cosine_distance(similarity: FloatArray) -> FloatArray:
    return np.clip(1.0 - similarity, 0.0, None)


def _euclid_distance(similarity: FloatArray) -> FloatArray:
    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, None))


METRICS: dict[Metric, Callable[[FloatArray], FloatArray]] = {
    "cosine": _cosine_distance,
    "dot": _cosine_distance,
    "euclid": _euclid_distance,
}
"""Metric → distance computed from the cosine similarity of unit vectors."""


def similarity_from_score(scores: FloatArray, distance: Distance) -> FloatArray:
    """Cosine similarity of unit vectors from the score Qdrant reports for ``distance``."""
    if distance == "euclid":
        # Qdrant reports the Euclidean distance d; on unit vectors d² = 2 - 2·cos.
        return 1.0 - scores**2 / 2.0
    return scores


def distance_from_similarity(similarity: FloatArray, metric: Metric) -> FloatArray:
    """Distances under ``metric`` from cosine similarities (see the module docstring).

    Raises:
        ConfigError: an unknown metric.
    """
    if metric not in METRICS:
        raise ConfigError(f"metric: got {metric!r}, expected one of {', '.join(METRICS)}")
    return METRICS[metric](np.asarray(similarity, dtype=np.float64))


def weights(
    distance: FloatArray, weighting: Weighting, valid: npt.NDArray[np.bool_] | None = None
) -> FloatArray:
    """Vote weight of each neighbour, shape like ``distance`` (n, k); 0 where not ``valid``.

    ``distance`` weighting is ``1 / d`` with the exact-match rule of the module docstring.

    Raises:
        ConfigError: an unknown weighting.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting: got {weighting!r}, expected one of {', '.join(WEIGHTINGS)}")
    ok = np.ones(distance.shape, dtype=bool) if valid is None else valid
    if weighting == "uniform":
        return ok.astype(np.float64)
    exact = ok & (distance <= EXACT)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(ok, 1.0 / np.maximum(distance, EXACT), 0.0)
    has_exact = exact.any(axis=-1, keepdims=True)
    return np.where(has_exact, exact.astype(np.float64), inverse)


@dataclass(frozen=True)
class Neighbours:
    """Nearest labeled points of n queries, best first, padded at the end.

    Attributes:
        ids: (n, k) point ids, -1 in padding.
        labels: (n, k) neighbour labels, ``NO_LABEL`` in padding.
        similarity: (n, k) cosine similarity, NaN in padding.
    """

    ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    similarity: FloatArray

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """(n, k) True for real neighbours, False for padding."""
        return np.asarray(self.ids >= 0)


def neighbours_from_hits(
    hits: Sequence[Sequence[Hit]],
    *,
    k: int,
    exclude: Sequence[int] | None = None,
    distance: Distance = "cosine",
    label_of: Mapping[int, int] | None = None,
) -> Neighbours:
    """Turn query results into arrays, dropping each query's own id when given.

    Args:
        hits: one list of hits per query, best first; payloads carry an integer ``label``
            (or ``label_of`` gives them).
        k: neighbours kept per query (after dropping ``exclude``).
        exclude: per query, an id to drop from its hits (leave-one-out: the image itself).
        distance: the collection's distance, to read scores as cosine similarity.
        label_of: each hit's label by id, for hits queried without payloads (a payload per
            hit made a million queries five times slower).

    Raises:
        InputError: a hit lacks an integer ``label`` in its payload (or in ``label_of``), or ``exclude`` has
            another length than ``hits``.
    """
    n = len(hits)
    if exclude is not None and len(exclude) != n:
        raise InputError(f"neighbours_from_hits: {len(exclude)} ids to exclude for {n} queries")
    ids = np.full((n, k), -1, dtype=np.int64)
    labels = np.full((n, k), NO_LABEL, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float64)
    for row, row_hits in enumerate(hits):
        skip = None if exclude is None else int(exclude[row])
        col = 0
        for hit in row_hits:
            if hit.id == skip:
                continue
            if col == k:
                break
            label = hit.payload.get("label") if label_of is None else label_of.get(hit.id)
            if label is None or (isinstance(label, float) and not float(label).is_integer()):
                raise InputError(f"point {hit.id}: payload label {label!r} is not a class (0/1)")
            ids[row, col] = hit.id
            labels[row, col] = int(label)
            scores[row, col] = hit.score
            col += 1
    return Neighbours(ids=ids, labels=labels, similarity=similarity_from_score(scores, distance))


@dataclass(frozen=True)
class Vote:
    """The weighted vote of n rows over ``n_classes`` classes.

    Attributes:
        shares: (n, n_classes) each class's share of the row's weight (0 with no vote).
        total: (n,) the row's total weight (0 when no neighbour could vote).
    """

    shares: FloatArray
    total: FloatArray

    @property
    def has_vote(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.total > 0)

    @property
    def best(self) -> FloatArray:
        """(n,) the winning share (0 with no vote)."""
        return np.asarray(self.shares.max(axis=1))

    def label(self, *, prior: int = NO_LABEL) -> npt.NDArray[np.int64]:
        """(n,) the winning class; ``prior`` for a tie between classes or no vote at all."""
        best = self.best
        tied = np.isclose(self.shares, best[:, None], rtol=0, atol=1e-12).sum(axis=1) > 1
        decided = self.has_vote & ~tied
        return np.where(decided, self.shares.argmax(axis=1), prior).astype(np.int64)


def vote(
    neighbours: Neighbours,
    *,
    k: int,
    weighting: Weighting,
    metric: Metric = "cosine",
    valid: npt.NDArray[np.bool_] | None = None,
    n_classes: int = 2,
) -> Vote:
    """Vote with the first ``k`` valid neighbours of each row.

    Args:
        neighbours: the neighbour lists (labels 0..n_classes-1 where valid).
        k: neighbours per vote; a row with fewer valid ones votes with what it has.
        weighting: ``uniform`` or ``distance`` (see :func:`weights`).
        metric: how similarities become distances.
        valid: (n, K) which neighbours may vote (default: every non-padding one); the
            cross-validation passes the neighbours outside the query's fold.
        n_classes: labels are 0..n_classes-1.
    """
    ok = neighbours.valid if valid is None else valid & neighbours.valid
    use = ok & (np.cumsum(ok, axis=1) <= k)
    weight = weights(distance_from_similarity(neighbours.similarity, metric), weighting, use)
    total = weight.sum(axis=1)
    per_class = np.stack([(weight * (neighbours.labels == c)).sum(axis=1) for c in range(n_classes)], axis=1)
    safe = np.where(total > 0, total, 1.0)[:, None]
    shares = np.where(total[:, None] > 0, per_class / safe, 0.0)
    return Vote(shares=shares, total=total)


def assign_folds(n: int, folds: int, seed: int) -> npt.NDArray[np.int64]:
    """A random, balanced fold number in ``[0, folds)`` for each of ``n`` points."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % folds)


__all__ = [
    "EXACT",
    "METRICS",
    "NO_LABEL",
    "WEIGHTINGS",
    "Metric",
    "Neighbours",
    "Vote",
    "Weighting",
    "assign_folds",
    "distance_from_similarity",
    "neighbours_from_hits",
    "similarity_from_score",
    "vote",
    "weights",
]
