"""kNN ensemble members, named ``k<K>-<weighting>[-<metric>]`` (e.g. ``k7-distance``).

A member is a k, a weighting and a metric; how a member weighs and votes is
:mod:`iris.neighbours` (shared with propagation), which also explains why every member
can read the same neighbour list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from iris.errors import ConfigError
from iris.neighbours import (
    METRICS,
    WEIGHTINGS,
    FloatArray,
    Metric,
    Weighting,
    distance_from_similarity,
    weights,
)

_NAME = re.compile(r"^k(?P<k>\d+)-(?P<weighting>[a-z]+)(?:-(?P<metric>[a-z]+))?$")


@dataclass(frozen=True)
class Member:
    """One kNN classifier of the ensemble."""

    k: int
    weighting: Weighting = "uniform"
    metric: Metric = "cosine"

    @property
    def name(self) -> str:
        suffix = "" if self.metric == "cosine" else f"-{self.metric}"
        return f"k{self.k}-{self.weighting}{suffix}"

    def weights(self, similarity: FloatArray) -> FloatArray:
        """Vote weights of neighbours, shape like ``similarity`` (n, k), from their cosine similarity."""
        return weights(distance_from_similarity(similarity, self.metric), self.weighting)


def parse_member(name: str) -> Member:
    """Parse a member name such as ``k7-distance`` or ``k5-uniform-euclid``.

    Raises:
        ConfigError: the name does not follow ``k<K>-<weighting>[-<metric>]``.
    """
    match = _NAME.match(name.strip())
    expected = (
        f"expected k<K>-<{'|'.join(WEIGHTINGS)}>[-<{'|'.join(METRICS)}>], "
        "e.g. k7-distance or k5-uniform-euclid"
    )
    if match is None:
        raise ConfigError(f"pseudolabel.members: cannot read member {name!r}; {expected}")
    k = int(match["k"])
    weighting = match["weighting"]
    metric = match["metric"] or "cosine"
    if k < 1:
        raise ConfigError(f"pseudolabel.members: member {name!r} has k={k}, expected k >= 1")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"pseudolabel.members: member {name!r} has weighting {weighting!r}; {expected}")
    if metric not in METRICS:
        raise ConfigError(f"pseudolabel.members: member {name!r} has metric {metric!r}; {expected}")
    return Member(k=k, weighting=weighting, metric=metric)  # type: ignore[arg-type]


def parse_members(names: Sequence[str]) -> tuple[Member, ...]:
    """Parse an ensemble; names must be distinct and at least one.

    Raises:
        ConfigError: empty ensemble, a bad name, or the same member twice.
    """
    if not names:
        raise ConfigError("pseudolabel.members: the ensemble is empty, expected at least one member")
    members = tuple(parse_member(n) for n in names)
    seen: set[str] = set()
    for member in members:
        if member.name in seen:
            raise ConfigError(f"pseudolabel.members: member {member.name} is listed twice")
        seen.add(member.name)
    return members
