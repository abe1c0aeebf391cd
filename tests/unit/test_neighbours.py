"""The one kNN core (iris.neighbours): scores, weights, the exact-match rule, the vote, the folds."""

from __future__ import annotations

import numpy as np
import pytest

from iris.errors import InputError
from iris.neighbours import (
    EXACT,
    NO_LABEL,
    Neighbours,
    assign_folds,
    neighbours_from_hits,
    similarity_from_score,
    vote,
    weights,
)
from iris.store.base import Hit


def test_euclid_scores_become_cosine_similarity() -> None:
    a = np.array([1.0, 0.0])
    b = np.array([0.6, 0.8])
    np.testing.assert_allclose(similarity_from_score(np.array([np.linalg.norm(a - b)]), "euclid"), [a @ b])
    np.testing.assert_allclose(similarity_from_score(np.array([0.3]), "cosine"), [0.3])


def test_exact_matches_share_all_the_weight_and_padding_gets_none() -> None:
    distance = np.array([[0.0, EXACT / 2, 0.5, 0.2], [0.1, 0.5, 0.3, 0.0]])
    valid = np.array([[True, True, True, False], [True, True, True, False]])
    np.testing.assert_allclose(weights(distance, "distance", valid), [[1, 1, 0, 0], [10, 2, 1 / 0.3, 0]])
    np.testing.assert_allclose(weights(distance, "uniform", valid), valid.astype(float))


def test_an_exact_duplicate_decides_against_many_close_neighbours() -> None:
    # Under the old propagation rule 1/(d + 1e-6) the duplicate had weight ~1e6 against
    # 14 neighbours at 1e-5 (weight ~9e4 each, 1.3e6 together) and lost; now it decides.
    nb = Neighbours(
        ids=np.arange(15, dtype=np.int64)[None, :],
        labels=np.array([[1] + [0] * 14], dtype=np.int64),
        similarity=np.array([[1.0] + [1.0 - 1e-5] * 14]),
    )
    result = vote(nb, k=15, weighting="distance")
    assert result.label().tolist() == [1] and result.best.tolist() == [1.0]


def test_vote_ties_and_empty_rows_take_the_prior() -> None:
    nb = Neighbours(
        ids=np.array([[1, 2], [-1, -1]], dtype=np.int64),
        labels=np.array([[0, 1], [NO_LABEL, NO_LABEL]], dtype=np.int64),
        similarity=np.array([[0.5, 0.5], [np.nan, np.nan]]),
    )
    result = vote(nb, k=2, weighting="distance")
    assert result.label(prior=1).tolist() == [1, 1]
    assert result.label().tolist() == [NO_LABEL, NO_LABEL]
    assert result.has_vote.tolist() == [True, False]


def test_neighbours_from_hits_drops_self_and_pads() -> None:
    hits = [[Hit(7, 0.99, {"label": 1}), Hit(3, 0.9, {"label": 0})], [Hit(5, 0.8, {"label": 1})]]
    nb = neighbours_from_hits(hits, k=2, exclude=[7, 9])
    assert nb.ids.tolist() == [[3, -1], [5, -1]]
    assert nb.labels.tolist() == [[0, NO_LABEL], [1, NO_LABEL]]
    assert nb.valid.tolist() == [[True, False], [True, False]]
    with pytest.raises(InputError, match="payload label"):
        neighbours_from_hits([[Hit(1, 0.5, {})]], k=1)


def test_folds_are_balanced_and_seeded() -> None:
    fold = assign_folds(10, 3, seed=1)
    assert sorted(np.bincount(fold).tolist()) == [3, 3, 4]
    assert fold.tolist() == assign_folds(10, 3, seed=1).tolist()
    assert fold.tolist() != assign_folds(10, 3, seed=2).tolist()


def test_the_vocabulary_names_exactly_what_the_core_implements() -> None:
    from iris import neighbours, vocabulary

    assert set(neighbours.METRICS) == set(vocabulary.METRICS)
    assert neighbours.WEIGHTINGS == vocabulary.WEIGHTINGS == ("uniform", "distance")
