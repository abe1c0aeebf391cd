from __future__ import annotations

import numpy as np
import pytest

from iris.errors import ConfigError
from iris.pseudolabel.members import Member, parse_member, parse_members


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("k7-distance", Member(7, "distance", "cosine")),
        ("k5-uniform-cosine", Member(5, "uniform", "cosine")),
        ("k11-distance-euclid", Member(11, "distance", "euclid")),
        ("k3-uniform-dot", Member(3, "uniform", "dot")),
    ],
)
def test_parse_member(name: str, expected: Member) -> None:
    assert parse_member(name) == expected


def test_name_round_trips_with_cosine_implied() -> None:
    assert parse_member("k5-uniform-cosine").name == "k5-uniform"
    assert parse_member("k9-distance-euclid").name == "k9-distance-euclid"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("seven-distance", "cannot read member"),
        ("k0-uniform", "k=0"),
        ("k5-gaussian", "weighting 'gaussian'"),
        ("k5-uniform-manhattan", "metric 'manhattan'"),
    ],
)
def test_bad_names_say_what_was_expected(name: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_member(name)
    assert "pseudolabel.members" in str(info.value)


def test_ensemble_rejects_duplicates_and_empty() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        parse_members(["k5-uniform", "k5-uniform-cosine"])
    with pytest.raises(ConfigError, match="empty"):
        parse_members([])


def test_distance_weights_follow_the_metric() -> None:
    similarity = np.array([[0.9, 0.5]])
    cosine = Member(2, "distance", "cosine").weights(similarity)
    euclid = Member(2, "distance", "euclid").weights(similarity)
    np.testing.assert_allclose(cosine, [[1 / 0.1, 1 / 0.5]])
    np.testing.assert_allclose(euclid, [[1 / np.sqrt(0.2), 1 / np.sqrt(1.0)]])
    np.testing.assert_allclose(Member(2, "uniform").weights(similarity), [[1.0, 1.0]])


def test_an_exact_match_takes_all_the_weight() -> None:
    # The rule is iris.neighbours' (EXACT = 1e-6), the same one propagation uses: a
    # float32 duplicate whose cosine reads 1 - 4e-7 is an exact match too.
    weights = Member(3, "distance").weights(np.array([[1.0, 0.8, 0.7], [1.0 - 4e-7, 0.8, 0.7]]))
    np.testing.assert_allclose(weights, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
