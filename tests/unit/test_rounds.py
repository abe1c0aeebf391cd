"""Crowd-round strategies and the audit: exact picks on small readable pools, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris.errors import InputError
from iris.rounds import STRATEGIES, Candidates, audit_estimate, audit_sample, decide, expected_accuracy, pick
from iris.rounds.audit import AuditEstimate
from iris.rounds.strategies import nearest_ids, seed_shortlist

#        id:   10    11    12    13    14    15    16    17
CERTAINTY = [0.9, 0.1, 0.5, 0.05, 0.2, 0.8, 0.15, 0.3]
LABELED = [True, False, False, False, False, False, True, False]


def pool() -> Candidates:
    """Two groups on a line: ids 10-13 near x=0, ids 14-17 near x=10 (2-d vectors)."""
    xs = [0.0, 0.1, 0.2, 0.3, 10.0, 10.1, 10.2, 10.3]
    vectors = np.array([[1.0, x] for x in xs])
    return Candidates(
        ids=np.arange(10, 18, dtype=np.int64),
        vectors=vectors,
        labeled=np.array(LABELED),
        certainty=np.array(CERTAINTY),
        status=np.array(["auto", "problematic", "auto", "problematic", "auto", "auto", "auto", "auto"]),
        knn_share=np.array([1.0, 0.5, 0.9, 0.4, 0.9, 1.0, 1.0, 0.8]),
    )


def ids_of(c: Candidates, rows: np.ndarray) -> list[int]:
    return c.ids[rows].tolist()


def test_least_certain_takes_the_lowest_certainty_first() -> None:
    c = pool()
    rng = np.random.default_rng(0)
    assert ids_of(c, pick("least-certain", c, n=3, rng=rng)) == [13, 11, 14]


def test_whole_pool_and_none() -> None:
    c = pool()
    rng = np.random.default_rng(0)
    assert ids_of(c, pick("whole-pool", c, n=None, rng=rng)) == [11, 12, 13, 14, 15, 17]
    assert pick("none", c, n=None, rng=rng).tolist() == []
    assert pick("none", c, n=5, rng=rng).tolist() == []


def test_random_is_seeded_and_draws_only_open_images() -> None:
    c = pool()
    a = pick("random", c, n=4, rng=np.random.default_rng(7))
    b = pick("random", c, n=4, rng=np.random.default_rng(7))
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 4 and not c.labeled[a].any()
    assert sorted(ids_of(c, pick("random", c, n=99, rng=np.random.default_rng(1)))) == [
        11,
        12,
        13,
        14,
        15,
        17,
    ]


def test_iris_spreads_over_the_space() -> None:
    # The 2 least certain (13, 11) are both in the left group; least-certain buys both,
    # iris buys one per cluster of the 4 least certain (13, 11, 14, 17): one on each side.
    c = pool()
    picked = ids_of(c, pick("iris", c, n=2, rng=np.random.default_rng(0)))
    assert picked == [13, 14]
    assert ids_of(c, pick("least-certain", c, n=2, rng=np.random.default_rng(0))) == [13, 11]


def test_seed_is_problematic_then_neighbours_in_the_select_stages_order() -> None:
    c = pool()
    # With k=2: 13's nearest are 12 and 11 (one problematic), 11's are 12 and 10 (none), so
    # 13 then 11; then 12, whose nearest (11, 13) are both problematic. 10 is labeled; the
    # right group has no problematic image near it.
    assert ids_of(c, seed_shortlist(c, n=None, k=2)) == [13, 11, 12]
    assert ids_of(c, seed_shortlist(c, n=2, k=2)) == [13, 11]
    # pick() uses the select stage's default k=5 and cuts by the same priority.
    whole = pick("seed", c, n=None, rng=np.random.default_rng(0))
    assert ids_of(c, whole)[:2] == [13, 11]
    assert ids_of(c, pick("seed", c, n=3, rng=np.random.default_rng(0))) == ids_of(c, whole)[:3]


def test_seed_needs_the_pseudolabels() -> None:
    c = pool()
    bare = Candidates(ids=c.ids, vectors=c.vectors, labeled=c.labeled, certainty=c.certainty)
    with pytest.raises(InputError, match="status and knn_share"):
        pick("seed", bare, n=3, rng=np.random.default_rng(0))


def test_unknown_strategy_and_missing_n_are_refused() -> None:
    c = pool()
    with pytest.raises(InputError, match="expected one of iris, seed"):
        pick("smart", c, n=3, rng=np.random.default_rng(0))
    with pytest.raises(InputError, match="expected a number"):
        pick("random", c, n=None, rng=np.random.default_rng(0))


def test_candidates_check_their_shapes() -> None:
    with pytest.raises(InputError, match="3 ids but labeled has 2 rows"):
        Candidates(
            ids=np.arange(3), vectors=np.zeros((3, 2)), labeled=np.zeros(2, bool), certainty=np.zeros(3)
        )


def test_nearest_ids_exclude_the_image_itself() -> None:
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert nearest_ids(vectors, np.array([5, 6, 7, 8]), k=1).tolist() == [[6], [5], [8], [7]]


@settings(max_examples=40, deadline=None)
@given(
    n_images=st.integers(3, 40),
    n=st.integers(0, 45),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(sorted(STRATEGIES)),
)
def test_no_strategy_returns_a_labeled_image_or_one_twice(
    n_images: int, n: int, seed: int, name: str
) -> None:
    rng = np.random.default_rng(seed)
    c = Candidates(
        ids=rng.permutation(1000)[:n_images].astype(np.int64),
        vectors=rng.normal(size=(n_images, 3)),
        labeled=rng.random(n_images) < 0.3,
        certainty=rng.random(n_images),
        status=np.where(rng.random(n_images) < 0.4, "problematic", "auto"),
        knn_share=rng.random(n_images),
    )
    rows = pick(name, c, n=n, rng=rng)
    assert len(set(rows.tolist())) == len(rows) <= n
    assert not c.labeled[rows].any()
    if name in ("random", "least-certain", "iris", "whole-pool"):
        assert len(rows) == min(n, int((~c.labeled).sum()))


# --- the audit ---------------------------------------------------------------------------


def test_audit_sample_is_uniform_without_repeats() -> None:
    rows = np.arange(100, 200)
    drawn = audit_sample(rows, n=10, rng=np.random.default_rng(3))
    assert len(set(drawn.tolist())) == 10 and set(drawn.tolist()) <= set(rows.tolist())
    assert audit_sample(rows[:3], n=10, rng=np.random.default_rng(3)).size == 3
    # Uniform: over many draws every row comes up about equally often.
    counts = np.zeros(100)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts[audit_sample(rows, n=10, rng=rng) - 100] += 1
    assert counts.min() > 150 and counts.max() < 250  # expected 200 each


def test_a_perfect_crowd_makes_the_audit_the_plain_wilson_interval() -> None:
    auto = np.array([1] * 90 + [0] * 10)
    crowd = np.ones(100, dtype=int)
    est = audit_estimate(auto, crowd, np.ones(100))
    assert (est.n, est.agree, est.accuracy) == (100, 90, 0.9)
    assert est.low == pytest.approx(0.8256, abs=1e-4) and est.high == pytest.approx(0.9448, abs=1e-4)


def test_a_fallible_crowd_is_corrected_for() -> None:
    # Crowd right with probability 0.9, automatic labels 80% right, errors independent:
    # agreement = 0.8·0.9 + 0.2·0.1 = 0.74, and the estimate gives back 0.8.
    auto = np.array([1] * 74 + [0] * 26)
    est = audit_estimate(auto, np.ones(100, dtype=int), np.full(100, 0.9))
    assert est.accuracy == pytest.approx(0.8)
    assert est.crowd_accuracy == pytest.approx(0.9)
    assert est.low is not None and est.high is not None and est.low < 0.8 < est.high


def test_an_empty_or_useless_audit_estimates_nothing() -> None:
    assert audit_estimate(np.array([]), np.array([]), np.array([])).accuracy is None
    coin = audit_estimate(np.array([1, 0]), np.array([1, 1]), np.array([0.5, 0.5]))
    assert (coin.n, coin.agree, coin.accuracy) == (2, 1, None)
    with pytest.raises(InputError, match="3 automatic labels, 2 crowd labels"):
        audit_estimate(np.zeros(3), np.zeros(2), np.zeros(2))


def test_audit_interval_covers_the_truth_in_simulation() -> None:
    # 200 audits of 120 images: automatic labels 90% right, crowd 95% right, independent.
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        truth = rng.integers(0, 2, size=120)
        auto = np.where(rng.random(120) < 0.9, truth, 1 - truth)
        crowd = np.where(rng.random(120) < 0.95, truth, 1 - truth)
        true_accuracy = float((auto == truth).mean())
        est = audit_estimate(auto, crowd, np.full(120, 0.95))
        assert est.low is not None and est.high is not None
        covered += est.low <= true_accuracy <= est.high
    assert covered >= 180


def test_expected_accuracy_weighs_the_origins() -> None:
    assert (
        expected_accuracy(n_gt=100, n_crowd=100, crowd_accuracy=0.9, n_auto=200, auto_accuracy=0.8) == 0.875
    )
    assert expected_accuracy(n_gt=0, n_crowd=0, crowd_accuracy=0.9, n_auto=0, auto_accuracy=0.8) == 1.0


def _audit(low: float | None) -> AuditEstimate:
    return AuditEstimate(n=100, agree=90, crowd_accuracy=0.95, accuracy=low, low=low, high=low)


@pytest.mark.parametrize(
    ("low", "spent", "round_index", "n_auto", "reason"),
    [
        (0.96, 100, 0, 800, "target"),  # (100 + 100·0.95 + 800·0.96) / 1000 = 0.963 >= 0.95
        (0.90, 100, 0, 800, None),  # 0.915: go on
        (0.90, 100, 2, 800, "rounds"),  # the third of three rounds
        (0.90, 850, 0, 800, "budget"),  # 850 + 100 > 900
        (None, 100, 0, 800, None),  # no usable audit: go on
        (0.50, 100, 0, 0, "exhausted"),  # nothing left to label automatically
    ],
)
def test_decide(low: float | None, spent: int, round_index: int, n_auto: int, reason: str | None) -> None:
    d = decide(
        _audit(low),
        n_gt=100,
        n_crowd=100,
        crowd_accuracy=0.95,
        n_auto=n_auto,
        target=0.95,
        spent=spent,
        next_round=100,
        budget=900,
        round_index=round_index,
        max_rounds=3,
    )
    assert d.reason == reason and d.stop == (reason is not None)
    if low is not None and n_auto:
        assert d.expected_low is not None and math.isclose(
            d.expected_low, (100 + 95 + n_auto * low) / (200 + n_auto)
        )
