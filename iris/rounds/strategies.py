"""Which images one crowd round buys: strategies as pure functions, registered by name.

A strategy sees the images of one task (ground truth and pool, :class:`Candidates`), which
of them are already labeled (ground truth, or bought in an earlier round), the automatic
label of the others with its certainty, and how many images this round may buy. It returns
the rows to buy, first to buy first; it never returns a labeled row, nor one twice.

=============== ===========================================================================
iris            the least certain images first, spread over the embedding space: KMeans
                with one cluster per image to buy over the ``spread`` × n least certain,
                and the least certain image of each cluster (one round does not buy fifty
                copies of one confusion)
seed            the seed's single round: problematic images plus the images with a
                problematic one among their ``k`` nearest (:mod:`iris.shortlist`, the core
                the select stage uses), cut to n by its priority
random          n images drawn uniformly
least-certain   the n least certain images (no spread)
whole-pool      every unlabeled image (in id order)
none            nothing (ground truth only)
=============== ===========================================================================

Ties in certainty are broken by id, so every strategy is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from iris.errors import InputError
from iris.shortlist import build_shortlist, problematic_neighbour_counts
from iris.tables import Status

StrategyName = Literal["iris", "seed", "random", "least-certain", "whole-pool", "none"]
IntArray = npt.NDArray[np.int64]

SPREAD = 4
"""``iris``: the doubtful set is this many times the images a round buys."""
NEIGHBOURS = 5
"""``seed``: an image joins the shortlist when a problematic one is among its k nearest."""


@dataclass(frozen=True)
class Candidates:
    """The images of one task as a round sees them; every array has one row per image.

    Attributes:
        ids: (n,) image ids.
        vectors: (n, d) embeddings (cosine geometry: rows are normalised when used).
        labeled: (n,) True for ground truth and images already bought.
        certainty: (n,) certainty of the automatic label in [0, 1] (ignored where labeled).
        status: (n,) ``auto`` / ``problematic`` as the pseudolabel consensus said (the seed's
            strategy reads it; labeled rows are never problematic).
        knn_share: (n,) the ensemble's share (the seed's shortlist orders by it).
    """

    ids: IntArray
    vectors: npt.NDArray[np.floating]
    labeled: npt.NDArray[np.bool_]
    certainty: npt.NDArray[np.floating]
    status: npt.NDArray[np.str_] | None = None
    knn_share: npt.NDArray[np.floating] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        shapes = {
            "vectors": self.vectors.shape[0] if self.vectors.ndim == 2 else -1,
            "labeled": len(self.labeled),
            "certainty": len(self.certainty),
            **({"status": len(self.status)} if self.status is not None else {}),
            **({"knn_share": len(self.knn_share)} if self.knn_share is not None else {}),
        }
        bad = {name: m for name, m in shapes.items() if m != n}
        if bad:
            raise InputError(
                f"round candidates: {n} ids but "
                + ", ".join(f"{name} has {m} rows" for name, m in bad.items())
                + " (vectors must be 2-d)"
            )

    @property
    def open(self) -> IntArray:
        """Rows that may be bought (not labeled), in id order."""
        rows = np.flatnonzero(~self.labeled)
        return rows[np.argsort(self.ids[rows], kind="stable")]


Strategy = Callable[..., IntArray]


def _least_certain_order(c: Candidates, rows: IntArray) -> IntArray:
    """``rows`` sorted by certainty, then id."""
    return rows[np.lexsort((c.ids[rows], c.certainty[rows]))]


def least_certain(c: Candidates, *, n: int, rng: np.random.Generator | None = None) -> IntArray:
    """The ``n`` least certain open images."""
    return _least_certain_order(c, c.open)[: max(n, 0)]


def random(c: Candidates, *, n: int, rng: np.random.Generator) -> IntArray:
    """``n`` open images drawn uniformly (all of them when fewer are open)."""
    rows = c.open
    return rng.choice(rows, size=min(max(n, 0), len(rows)), replace=False).astype(np.int64)


def whole_pool(c: Candidates, *, n: int | None = None, rng: np.random.Generator | None = None) -> IntArray:
    """Every open image, in id order (a campaign over everything has no reason to sort by
    iris's doubt, and the order of pages changes which honest people quality control bans)."""
    return c.open


def no_crowd(c: Candidates, *, n: int | None = None, rng: np.random.Generator | None = None) -> IntArray:
    """Nothing."""
    return np.zeros(0, dtype=np.int64)


def _unit(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    data = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return (data / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


def spread_least_certain(
    c: Candidates, *, n: int, rng: np.random.Generator, spread: int = SPREAD
) -> IntArray:
    """``iris``: one image per cluster of the ``spread · n`` least certain (see the module docstring)."""
    from sklearn.cluster import KMeans

    doubtful = _least_certain_order(c, c.open)[: max(n, 0) * spread]
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(doubtful) <= n:
        return doubtful
    model = KMeans(n_clusters=n, n_init=1, max_iter=50, random_state=int(rng.integers(2**31))).fit(
        _unit(c.vectors[doubtful])
    )
    # doubtful is least certain first, so each cluster's first member is its least certain one.
    _, first = np.unique(model.labels_, return_index=True)
    picked = doubtful[np.sort(first)]
    if len(picked) < n:  # an empty cluster: fill from the least certain left over
        rest = doubtful[~np.isin(doubtful, picked)]
        picked = np.concatenate([picked, rest[: n - len(picked)]])
    return _least_certain_order(c, picked)


def nearest_ids(vectors: npt.NDArray[np.floating], ids: IntArray, *, k: int, chunk: int = 2048) -> IntArray:
    """(n, k) ids of each row's ``k`` nearest rows by cosine, itself excluded (exact search)."""
    unit = _unit(vectors)
    k = min(k, len(ids) - 1)
    out = np.full((len(ids), max(k, 0)), -1, dtype=np.int64)
    if k <= 0:
        return out
    for start in range(0, len(ids), chunk):
        sims = unit[start : start + chunk] @ unit.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = ids[np.take_along_axis(top, order, axis=1)]
    return out


def seed_shortlist(
    c: Candidates, *, n: int | None = None, rng: np.random.Generator | None = None, k: int = NEIGHBOURS
) -> IntArray:
    """``seed``: problematic images and their neighbours by the select stage's priority, cut to ``n``.

    Raises:
        InputError: the candidates carry no ``status`` or ``knn_share``.
    """
    if c.status is None or c.knn_share is None:
        raise InputError("strategy seed: the candidates need status and knn_share (from the pseudolabels)")
    neighbours = nearest_ids(c.vectors, c.ids, k=k)
    problematic = c.ids[(c.status == Status.PROBLEMATIC.value) & ~c.labeled]
    counts = problematic_neighbour_counts(neighbours, problematic)
    open_rows = c.open
    frame = pl.DataFrame(
        {
            "id": c.ids[open_rows],
            "status": c.status[open_rows].astype(str).tolist(),
            "knn_share": np.asarray(c.knn_share, dtype=np.float64)[open_rows],
        },
        schema={"id": pl.Int64, "status": pl.String, "knn_share": pl.Float64},
    )
    shortlist, _ = build_shortlist(frame, counts[open_rows], budget=max(n, 0) if n is not None else 0)
    row_of = {int(i): r for r, i in enumerate(c.ids.tolist())}
    picked = np.array([row_of[int(i)] for i in shortlist["id"].to_list()], dtype=np.int64)
    return picked if n is None or n > 0 else picked[:0]


STRATEGIES: dict[str, Strategy] = {
    "iris": spread_least_certain,
    "seed": seed_shortlist,
    "random": random,
    "least-certain": least_certain,
    "whole-pool": whole_pool,
    "none": no_crowd,
}
"""Strategy name → function ``(candidates, *, n, rng) -> rows``."""


def pick(
    name: StrategyName | str, candidates: Candidates, *, n: int | None, rng: np.random.Generator
) -> IntArray:
    """The rows strategy ``name`` buys this round (at most ``n``; None: as many as it wants,
    which only ``seed``, ``whole-pool`` and ``none`` define).

    Raises:
        InputError: an unknown strategy, or ``n`` missing where the strategy needs it.
    """
    if name not in STRATEGIES:
        raise InputError(f"round strategy: got {name!r}, expected one of {', '.join(STRATEGIES)}")
    if n is None and name not in ("seed", "whole-pool", "none"):
        raise InputError(f"round strategy {name}: expected a number of images to buy, got none")
    rows = STRATEGIES[name](candidates, n=n, rng=rng)
    return rows if n is None else rows[:n]


__all__ = [
    "NEIGHBOURS",
    "SPREAD",
    "STRATEGIES",
    "Candidates",
    "Strategy",
    "StrategyName",
    "least_certain",
    "nearest_ids",
    "no_crowd",
    "pick",
    "random",
    "seed_shortlist",
    "spread_least_certain",
    "whole_pool",
]
