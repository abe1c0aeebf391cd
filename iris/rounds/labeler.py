"""The automatic labels a round is picked by, and that the images no round bought keep.

One rule for every round and for the final labels, in :func:`blend`: the mean, over the
members of the ``[pseudolabel]`` ensemble, of each member's vote share for class 1 among
every label known so far (:func:`knn_share`: ground truth and the crowd's aggregated
labels), averaged (``labeler = "knn+probe"``) with a logistic regression fitted on those
labels, each weighted by its confidence (:func:`probe_share`: the classifier as a labeler).
The label is ``p > 0.5`` and its certainty ``|2·p − 1|``.

The neighbours come from wherever the caller keeps its vectors: the rounds of ``iris run``
ask Qdrant (:mod:`iris.rounds.loop`), the label-efficiency benchmark searches in numpy. The
vote is :func:`iris.neighbours.vote` in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iris.errors import InputError
from iris.neighbours import Neighbours, vote
from iris.pseudolabel.members import Member

PROBE_C = 10.0
"""Inverse regularisation of the probe (scikit-learn's ``C``). 10 against 1: +0.4 points of
final-label accuracy on the demo's fine-tuned vectors (unit rows of 1,280 dimensions, where 1 is
too strong); on the benchmark's 50-d PCA vectors it changes little either way."""


@dataclass(frozen=True)
class AutoLabels:
    """Automatic labels of n images."""

    label: npt.NDArray[np.int64]
    certainty: npt.NDArray[np.float64]
    """``|2·p − 1|`` in [0, 1]."""
    p1: npt.NDArray[np.float64]
    """The probability of class 1 the label and certainty come from."""


def knn_share(neighbours: Neighbours, members: Sequence[Member]) -> npt.NDArray[np.float64]:
    """(n,) the members' mean vote share for class 1 (0.5 where a row has no neighbour)."""
    shares = []
    for m in members:
        v = vote(neighbours, k=m.k, weighting=m.weighting, metric=m.metric)
        shares.append(np.where(v.has_vote, v.shares[:, 1], 0.5))
    return np.asarray(np.mean(shares, axis=0), dtype=np.float64)


def probe_share(
    features: npt.NDArray[np.floating],
    labeled: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    weight: npt.NDArray[np.floating],
    *,
    rows: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.float64]:
    """(n,) a logistic regression's probability of class 1 for ``features[rows]`` (all rows
    by default), fitted on ``features[labeled]`` with ``labels`` weighted by ``weight``.

    Raises:
        InputError: the labeled rows hold one class only.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        raise InputError(f"round labeler: {len(labels)} labels of one class only; the probe needs both")
    model = LogisticRegression(C=PROBE_C, max_iter=500)
    model.fit(features[labeled], labels, sample_weight=np.asarray(weight, dtype=np.float64))
    target = features if rows is None else features[rows]
    return np.asarray(model.predict_proba(target)[:, 1], dtype=np.float64)


def blend(knn_p1: npt.NDArray[np.float64], probe_p1: npt.NDArray[np.float64] | None) -> AutoLabels:
    """The labels from the kNN share, averaged with the probe's when there is one."""
    p1 = knn_p1 if probe_p1 is None else 0.5 * knn_p1 + 0.5 * probe_p1
    return AutoLabels(label=(p1 > 0.5).astype(np.int64), certainty=np.abs(2 * p1 - 1), p1=p1)


__all__ = [
    "PROBE_C",
    "AutoLabels",
    "blend",
    "knn_share",
    "probe_share",
]
