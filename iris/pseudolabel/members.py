"""kNN ensemble members, named ``k<K>-<weighting>[-<metric>]`` (e.g. ``k7-distance``).

A member is a k, a weighting and a metric. The weightings and metrics are registries
(:data:`WEIGHTINGS`, :data:`METRICS`) so the CLI's choices and the error messages come
from one place.

Metrics and the store: the collection holds L2-normalised vectors, and on unit vectors
cosine, dot and Euclidean distance rank neighbours identically (``|a-b|² = 2 - 2·a·b``).
So every member reads the same neighbour list and a metric only changes the *distance*
a ``distance``-weighted member divides by; it is computed from the cosine similarity
Qdrant returns:

=========== ============================ ==========================================
metric      distance from similarity s   note
=========== ============================ ==========================================
cosine      ``1 - s``                    the default
dot         ``1 - s``                    same as cosine on unit vectors
euclid      ``sqrt(max(0, 2 - 2 s))``    weights ∝ 1/sqrt(cosine distance)
=========== ============================ ==========================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from iris.errors import ConfigError

Weighting = Literal["uniform", "distance"]
Metric = Literal["cosine", "dot", "euclid"]
FloatArray = npt.NDArray[np.float64]

_EPS = 1e-9


def _cosine_distance(similarity: FloatArray) -> FloatArray:
    return np.clip(1.0 - similarity, 0.0, None)


def _euclid_distance(similarity: FloatArray) -> FloatArray:
    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, None))


METRICS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "cosine": _cosine_distance,
    "dot": _cosine_distance,
    "euclid": _euclid_distance,
}
"""Metric name → distance computed from the cosine similarity of unit vectors."""


def _uniform_weights(distance: FloatArray) -> FloatArray:
    return np.ones_like(distance)


def _distance_weights(distance: FloatArray) -> FloatArray:
    # As in scikit-learn: 1/d, and an exact match (d == 0) takes all the weight of its row.
    exact = distance <= _EPS
    weights = 1.0 / np.maximum(distance, _EPS)
    has_exact = exact.any(axis=-1, keepdims=True)
    return np.where(has_exact, exact.astype(np.float64), weights)


WEIGHTINGS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "uniform": _uniform_weights,
    "distance": _distance_weights,
}
"""Weighting name → weights of a row of neighbour distances."""

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
        return WEIGHTINGS[self.weighting](METRICS[self.metric](similarity))


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
