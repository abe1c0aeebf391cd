"""Honest estimates of the automatic labels' accuracy, measured on the ground truth.

Each labeled image is labeled as if it were a pool image, without its own label:

* kNN ensemble: **leave-one-out**. The labeled images query the labeled points for
  ``k_max + 1`` neighbours and drop themselves, then vote through the same
  :func:`~iris.pseudolabel.knn.ensemble_vote` as the pool.
* clustering: **k-fold**. Refitting KMeans once per labeled image would cost n fits, so
  the labeled images are split into folds (:func:`iris.neighbours.assign_folds`, the
  same split as propagation's cross-validation); each fold is clustered with the other folds'
  seeds only (same :class:`~iris.pseudolabel.kmeans.SeededKMeans`, same pool), and its
  images take the label of the cluster they fall in.

Then the same :func:`~iris.pseudolabel.consensus.consensus` decides which would have been
labeled automatically, and the estimate is the share of those that are right, with a
Wilson 95% interval (a few hundred labels leave several points of uncertainty).

A backbone fine-tuned on the labeled images pulls them towards their class, so an
estimate measured on those very images is optimistic. When the store's payload says
which labeled images the fine-tune trained on (``finetune: "train"``), only the others
(``"heldout"``) are evaluated; they still vote for everyone, like for the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iris.errors import InputError
from iris.neighbours import NO_LABEL, assign_folds
from iris.pseudolabel.consensus import consensus
from iris.pseudolabel.kmeans import SeededKMeans
from iris.pseudolabel.knn import ensemble_vote
from iris.pseudolabel.members import Member
from iris.store.base import Distance, Hit


@dataclass(frozen=True)
class Estimate:
    """Accuracy of automatic labels estimated on n labeled images."""

    n: int
    """Labeled images evaluated."""
    n_auto: int
    """Of those, how many would have been labeled automatically."""
    accuracy: float | None
    """Share of the automatic labels that are right (None when there were none)."""
    knn_accuracy: float | None
    """Share right of the kNN ensemble's labels alone (before consensus)."""
    method: str
    low: float | None = None
    """Lower end of the Wilson 95% interval of ``accuracy``."""
    high: float | None = None
    """Upper end of that interval."""

    @property
    def coverage(self) -> float:
        return self.n_auto / self.n if self.n else 0.0


def wilson_interval(right: int, n: int, *, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``right / n`` (None when n == 0)."""
    if n == 0:
        return None
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def kfold_cluster_labels(
    vectors: npt.NDArray[np.float32],
    labeled_rows: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    *,
    folds: int,
    seed: int,
    max_iter: int = 100,
) -> npt.NDArray[np.int64]:
    """Cluster label of each labeled row when its own seed is left out (k-fold).

    Args:
        vectors: (n, dim) everything that is clustered (labeled and pool).
        labeled_rows: (m,) rows of ``vectors`` that are labeled.
        labels: (m,) their labels.
        folds: number of folds (clamped to m).
        seed: fold shuffling and KMeans random state.

    Raises:
        InputError: fewer than two labeled rows.
    """
    m = len(labeled_rows)
    if m < 2:
        raise InputError(f"k-fold estimate: {m} labeled image(s), expected at least 2")
    folds = max(2, min(folds, m))
    fold_of = assign_folds(m, folds, seed)
    result = np.full(m, NO_LABEL, dtype=np.int64)
    for number in range(folds):
        fold = np.flatnonzero(fold_of == number)
        train = np.flatnonzero(fold_of != number)
        model = SeededKMeans(max_iter=max_iter, random_state=seed).fit(
            vectors, vectors[labeled_rows[train]], labels[train]
        )
        # The held-out images were clustered with the pool, so their fitted cluster is at hand.
        result[fold] = model.cluster_labels_[model.labels_[labeled_rows[fold]]]
    return result


def leave_one_out(
    hits: Sequence[Sequence[Hit]],
    ids: Sequence[int],
    labels: npt.NDArray[np.int64],
    members: Sequence[Member],
    *,
    confidence: float,
    quorum: float,
    cluster_labels: npt.NDArray[np.int64] | None = None,
    n_classes: int = 2,
    distance: Distance = "cosine",
) -> Estimate:
    """Estimate the automatic labels' accuracy on labeled images.

    Args:
        hits: per labeled image, its nearest labeled points (``k_max + 1`` of them, it
            may be among them: it is dropped).
        ids: (m,) the labeled images' ids, in the order of ``hits``.
        labels: (m,) their true labels.
        members, confidence, quorum: as for the pool.
        cluster_labels: (m,) held-out cluster labels (:func:`kfold_cluster_labels`), or
            None when clustering is off.

    Labels of fewer than ``n_classes`` classes give no accuracy (``accuracy`` None): every
    neighbour would vote for the one class, and a perfect score would mean nothing.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels)
    if len(classes) < n_classes:
        # Neighbours drawn from one class all vote for it: "1.0 accurate" would say nothing.
        return Estimate(
            n=len(labels),
            n_auto=0,
            accuracy=None,
            knn_accuracy=None,
            method=f"none: the {len(labels)} evaluated labels hold {len(classes)} of the {n_classes} classes",
        )
    votes = ensemble_vote(
        hits,
        members,
        confidence=confidence,
        quorum=quorum,
        n_classes=n_classes,
        exclude=list(ids),
        distance=distance,
    )
    auto_label, _status = consensus(votes.knn_label, cluster_labels)
    auto = auto_label != NO_LABEL
    knn = votes.knn_label != NO_LABEL
    method = "leave-one-out kNN" + (" + k-fold KMeans" if cluster_labels is not None else "")
    right = int((auto_label[auto] == labels[auto]).sum())
    interval = wilson_interval(right, int(auto.sum()))
    return Estimate(
        n=len(labels),
        n_auto=int(auto.sum()),
        accuracy=right / int(auto.sum()) if auto.any() else None,
        knn_accuracy=float((votes.knn_label[knn] == labels[knn]).mean()) if knn.any() else None,
        method=method,
        low=interval[0] if interval else None,
        high=interval[1] if interval else None,
    )
