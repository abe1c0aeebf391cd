"""The kNN ensemble vote: pure functions from neighbour lists to labels.

Every member reads the same neighbour list (the store is queried once with the largest k
and each member takes its first k; see :mod:`iris.pseudolabel.members` for why metrics
can share one query). A member is *confident* when its winning vote share is at least
``confidence`` and no other class ties it. The ensemble gives a label when at least
``quorum`` of all members vote confidently for the same class; otherwise the image is
unsure (label -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iris.errors import InputError
from iris.pseudolabel.members import Member
from iris.store.base import Distance, Hit

NO_LABEL = -1


@dataclass(frozen=True)
class Neighbours:
    """Nearest labeled points of n query images, best first, padded with ``NO_LABEL``.

    Attributes:
        ids: (n, k) point ids, -1 where there are fewer than k neighbours.
        labels: (n, k) neighbour labels, ``NO_LABEL`` in padding.
        similarity: (n, k) cosine similarity (NaN in padding).
    """

    ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    similarity: npt.NDArray[np.float64]

    @property
    def k(self) -> int:
        return int(self.labels.shape[1])


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


def similarity_from_score(scores: npt.NDArray[np.float64], distance: Distance) -> npt.NDArray[np.float64]:
    """Cosine similarity of unit vectors from the score Qdrant reports for ``distance``."""
    if distance == "euclid":
        # Qdrant reports the Euclidean distance d; on unit vectors d² = 2 - 2·cos.
        return 1.0 - scores**2 / 2.0
    return scores


def neighbours_from_hits(
    hits: Sequence[Sequence[Hit]],
    *,
    k: int,
    exclude: Sequence[int] | None = None,
    distance: Distance = "cosine",
) -> Neighbours:
    """Turn query results into arrays, dropping each query's own id when given.

    Args:
        hits: one list of hits per query image, best first; payloads carry ``label``.
        k: neighbours kept per image (after dropping self).
        exclude: per query, an id to drop from its hits (leave-one-out: the image itself).
        distance: the collection's distance, to read scores as cosine similarity.

    Raises:
        InputError: a hit lacks an integer ``label`` in its payload.
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
            label = hit.payload.get("label")
            if label is None or (isinstance(label, float) and not float(label).is_integer()):
                raise InputError(f"point {hit.id}: payload label {label!r} is not a class (0/1)")
            ids[row, col] = hit.id
            labels[row, col] = int(label)
            scores[row, col] = hit.score
            col += 1
    return Neighbours(ids=ids, labels=labels, similarity=similarity_from_score(scores, distance))


def member_vote(
    neighbours: Neighbours, member: Member, *, confidence: float, n_classes: int = 2
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """One member's label (``NO_LABEL`` unless confident) and winning share per image."""
    k = min(member.k, neighbours.k)
    labels = neighbours.labels[:, :k]
    present = labels != NO_LABEL
    similarity = np.where(present, neighbours.similarity[:, :k], 0.0)
    weights = np.where(present, member.weights(similarity), 0.0)
    # A row whose padding made all-zero weights in "distance" mode would divide by zero.
    total = weights.sum(axis=1)
    per_class = np.stack([(weights * (labels == c)).sum(axis=1) for c in range(n_classes)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total[:, None] > 0, per_class / np.where(total > 0, total, 1.0)[:, None], 0.0)
    winner = shares.argmax(axis=1)
    best = shares.max(axis=1)
    # A tie between classes is not a decision, whatever the threshold.
    tied = (np.isclose(shares, best[:, None], rtol=0, atol=1e-12)).sum(axis=1) > 1
    confident = (best >= confidence) & ~tied & (total > 0)
    return np.where(confident, winner, NO_LABEL).astype(np.int64), best


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
