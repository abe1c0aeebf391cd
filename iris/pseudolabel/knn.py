"""The kNN ensemble vote: pure functions from neighbour lists to labels.

Every member reads the same neighbour list (the store is queried once with the largest k
and each member takes its first k; see :mod:`iris.neighbours` for why metrics can share
one query, and for the weighting and exact-match rules). A member is *confident* when
its winning vote share is at least ``confidence`` and no other class ties it. The
ensemble gives a label when at least ``quorum`` of all members vote confidently for the
same class; otherwise the image is unsure (label -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iris.errors import InputError
from iris.neighbours import NO_LABEL, Neighbours, neighbours_from_hits, vote
from iris.pseudolabel.members import Member
from iris.store.base import Distance, Hit


@dataclass(frozen=True)
class EnsembleVotes:
    """What the ensemble said about n images with m members.

    Attributes:
        member_labels: (n, m) each member's label, ``NO_LABEL`` when it was not confident.
        member_shares: (n, m) each member's winning vote share (0 with no neighbours).
        knn_label: (n,) ensemble label, ``NO_LABEL`` when no qualified majority agreed.
        knn_share: (n,) share of members confidently voting for the leading class.
    """

    member_labels: npt.NDArray[np.int64]
    member_shares: npt.NDArray[np.float64]
    knn_label: npt.NDArray[np.int64]
    knn_share: npt.NDArray[np.float64]


def member_vote(
    neighbours: Neighbours, member: Member, *, confidence: float, n_classes: int = 2
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """One member's label (``NO_LABEL`` unless confident) and winning share per image."""
    result = vote(
        neighbours, k=member.k, weighting=member.weighting, metric=member.metric, n_classes=n_classes
    )
    best = result.best
    # A tie between classes is not a decision, whatever the threshold (label() says NO_LABEL).
    label = result.label(prior=NO_LABEL)
    return np.where(best >= confidence, label, NO_LABEL).astype(np.int64), best


def ensemble_vote(
    hits: Sequence[Sequence[Hit]] | Neighbours,
    members: Sequence[Member],
    *,
    confidence: float,
    quorum: float,
    n_classes: int = 2,
    exclude: Sequence[int] | None = None,
    distance: Distance = "cosine",
) -> EnsembleVotes:
    """Vote every member on each image and combine them by qualified majority.

    Args:
        hits: per image, its nearest labeled points best first (at least the largest k of
            the members; ``query_batch`` output), or ready :class:`Neighbours`.
        members: the ensemble.
        confidence: a member is confident when its winning share is at least this.
        quorum: share of all members that must vote confidently for the same class.
        n_classes: labels are 0..n_classes-1.
        exclude: per image, an id to drop from its hits (leave-one-out).
        distance: the collection's distance (how to read hit scores).

    Raises:
        InputError: a neighbour label outside 0..n_classes-1.
    """
    k_max = max(m.k for m in members)
    neighbours = (
        hits
        if isinstance(hits, Neighbours)
        else neighbours_from_hits(hits, k=k_max, exclude=exclude, distance=distance)
    )
    bad = (neighbours.labels != NO_LABEL) & ((neighbours.labels < 0) | (neighbours.labels >= n_classes))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"point {neighbours.ids[row, col]}: label {neighbours.labels[row, col]} "
            f"is outside 0..{n_classes - 1}"
        )
    n = neighbours.labels.shape[0]
    member_labels = np.full((n, len(members)), NO_LABEL, dtype=np.int64)
    member_shares = np.zeros((n, len(members)), dtype=np.float64)
    for j, member in enumerate(members):
        member_labels[:, j], member_shares[:, j] = member_vote(
            neighbours, member, confidence=confidence, n_classes=n_classes
        )
    counts = np.stack([(member_labels == c).sum(axis=1) for c in range(n_classes)], axis=1)
    leader = counts.argmax(axis=1)
    lead = counts.max(axis=1)
    runner_up = np.sort(counts, axis=1)[:, -2] if n_classes > 1 else np.zeros(n, dtype=np.int64)
    share = lead / len(members)
    # Compare counts in integers so a quorum of 0.8 over 5 members means 4, never 3.999.
    needed = np.ceil(quorum * len(members) - 1e-9)
    agreed = (lead >= needed) & (lead > runner_up) & (lead > 0)
    return EnsembleVotes(
        member_labels=member_labels,
        member_shares=member_shares,
        knn_label=np.where(agreed, leader, NO_LABEL).astype(np.int64),
        knn_share=share.astype(np.float64),
    )
