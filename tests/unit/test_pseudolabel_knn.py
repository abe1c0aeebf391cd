"""The ensemble vote on small hand-made neighbour lists with expected outputs beside them."""

from __future__ import annotations

import numpy as np
import pytest

from iris.errors import InputError
from iris.pseudolabel.consensus import consensus
from iris.pseudolabel.estimate import leave_one_out
from iris.pseudolabel.knn import NO_LABEL, ensemble_vote, neighbours_from_hits
from iris.pseudolabel.members import Member, parse_members
from iris.store.base import Hit


def hits_of(labels: list[int], scores: list[float] | None = None, first_id: int = 100) -> list[Hit]:
    scores = scores or [0.9 - 0.01 * i for i in range(len(labels))]
    return [
        Hit(first_id + i, s, {"label": lab}) for i, (lab, s) in enumerate(zip(labels, scores, strict=True))
    ]


MEMBERS = parse_members(["k3-uniform", "k5-uniform", "k5-distance"])


def test_unanimous_neighbours_give_a_label() -> None:
    votes = ensemble_vote([hits_of([1, 1, 1, 1, 1])], MEMBERS, confidence=0.7, quorum=0.8)
    assert votes.knn_label.tolist() == [1]
    assert votes.knn_share.tolist() == [1.0]
    assert votes.member_labels.tolist() == [[1, 1, 1]]


def test_split_neighbours_leave_the_image_unsure() -> None:
    # k3 sees 1,1,0 (share 0.67 < 0.7): not confident; k5 sees 3 of 5 (0.6): not confident.
    votes = ensemble_vote([hits_of([1, 1, 0, 0, 1])], MEMBERS, confidence=0.7, quorum=0.8)
    assert votes.member_labels[0, :2].tolist() == [NO_LABEL, NO_LABEL]
    assert votes.knn_label.tolist() == [NO_LABEL]


def test_quorum_counts_members_not_shares() -> None:
    # k3 sees 0,0,0 (confident 0); k5 uniform sees 3/5 zeros (not confident).
    hits = [hits_of([0, 0, 0, 1, 1])]
    low = ensemble_vote(hits, MEMBERS, confidence=0.7, quorum=0.3)
    high = ensemble_vote(hits, MEMBERS, confidence=0.7, quorum=0.8)
    assert low.knn_label.tolist() == [0]
    assert high.knn_label.tolist() == [NO_LABEL]


def test_distance_weighting_trusts_the_closest() -> None:
    # Two very close 0s, three far 1s: uniform says 1 (0.6), distance says 0.
    hits = [hits_of([0, 0, 1, 1, 1], [0.99, 0.99, 0.2, 0.2, 0.2])]
    votes = ensemble_vote(hits, parse_members(["k5-uniform", "k5-distance"]), confidence=0.55, quorum=0.5)
    assert votes.member_labels.tolist() == [[1, 0]]
    assert votes.knn_label.tolist() == [NO_LABEL]  # one each: a tie is no majority


def test_a_tie_is_never_confident() -> None:
    votes = ensemble_vote([hits_of([0, 1])], [Member(2)], confidence=0.5, quorum=1.0)
    assert votes.member_labels.tolist() == [[NO_LABEL]]
    assert votes.member_shares.tolist() == [[0.5]]


def test_fewer_neighbours_than_k_vote_with_what_there_is() -> None:
    votes = ensemble_vote([hits_of([1, 1]), []], MEMBERS, confidence=0.7, quorum=0.8)
    assert votes.knn_label.tolist() == [1, NO_LABEL]
    assert votes.member_shares[1].tolist() == [0.0, 0.0, 0.0]


def test_euclid_scores_are_read_as_distances() -> None:
    # Euclid scores: lower is closer. 0.1 (close, label 0) vs 1.3 (far, label 1).
    hits = [[Hit(1, 0.1, {"label": 0}), Hit(2, 1.3, {"label": 1}), Hit(3, 1.3, {"label": 1})]]
    neighbours = neighbours_from_hits(hits, k=3, distance="euclid")
    np.testing.assert_allclose(neighbours.similarity[0], [1 - 0.01 / 2, 1 - 1.69 / 2, 1 - 1.69 / 2])
    votes = ensemble_vote(hits, [Member(3, "distance")], confidence=0.6, quorum=1.0, distance="euclid")
    assert votes.knn_label.tolist() == [0]


def test_exclude_drops_the_image_itself() -> None:
    hits = [[Hit(7, 1.0, {"label": 1}), *hits_of([0, 0, 0])]]
    with_self = ensemble_vote(hits, [Member(3)], confidence=0.6, quorum=1.0)
    without = ensemble_vote(hits, [Member(3)], confidence=0.6, quorum=1.0, exclude=[7])
    assert with_self.member_labels.tolist() == [[0]]  # 1,0,0 -> 0 at 0.67
    assert without.member_shares.tolist() == [[1.0]]


def test_a_label_outside_the_classes_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"outside 0\.\.1"):
        ensemble_vote([hits_of([1, 3, 1])], MEMBERS, confidence=0.7, quorum=0.8)
    with pytest.raises(InputError, match="not a class"):
        ensemble_vote([[Hit(1, 0.9, {})]], MEMBERS, confidence=0.7, quorum=0.8)


def test_consensus_needs_both_to_agree() -> None:
    knn = np.array([1, 0, NO_LABEL, 1])
    clusters = np.array([1, 1, 0, 1])
    auto, status = consensus(knn, clusters)
    assert auto.tolist() == [1, NO_LABEL, NO_LABEL, 1]
    assert status.tolist() == ["auto", "problematic", "problematic", "auto"]
    auto_only_knn, _ = consensus(knn, None)
    assert auto_only_knn.tolist() == [1, 0, NO_LABEL, 1]


def test_leave_one_out_goes_through_the_same_vote() -> None:
    # Three labeled images; each one's own hit comes first and must not count.
    hits = [
        [Hit(1, 1.0, {"label": 1}), Hit(2, 0.9, {"label": 0}), Hit(3, 0.8, {"label": 0})],
        [Hit(2, 1.0, {"label": 0}), Hit(3, 0.9, {"label": 0}), Hit(1, 0.8, {"label": 1})],
        [Hit(3, 1.0, {"label": 0}), Hit(2, 0.9, {"label": 0}), Hit(1, 0.8, {"label": 1})],
    ]
    estimate = leave_one_out(hits, [1, 2, 3], np.array([1, 0, 0]), [Member(2)], confidence=0.6, quorum=1.0)
    # Image 1 (truly 1) is voted 0 by its two others; images 2 and 3 see a 0 and a 1: unsure.
    assert estimate.n == 3
    assert estimate.n_auto == 1
    assert estimate.accuracy == 0.0
    assert estimate.method == "leave-one-out kNN"


def test_wilson_interval_matches_the_textbook_value() -> None:
    from iris.pseudolabel.estimate import wilson_interval

    low, high = wilson_interval(81, 100) or (0, 0)
    assert low == pytest.approx(0.7222, abs=1e-4)
    assert high == pytest.approx(0.8749, abs=1e-4)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)


def test_leave_one_out_on_labels_of_one_class_reports_no_accuracy() -> None:
    # Every neighbour votes 1: a "1.0 accurate" estimate would mean nothing.
    hits = [
        [Hit(i, 1.0, {"label": 1})] + [Hit(j, 0.9, {"label": 1}) for j in (1, 2, 3) if j != i]
        for i in (1, 2, 3)
    ]
    estimate = leave_one_out(hits, [1, 2, 3], np.array([1, 1, 1]), [Member(2)], confidence=0.6, quorum=1.0)
    assert estimate.n == 3
    assert estimate.n_auto == 0
    assert estimate.accuracy is None and estimate.knn_accuracy is None
    assert estimate.low is None and estimate.high is None
    assert estimate.method == "none: the 3 evaluated labels hold 1 of the 2 classes"
