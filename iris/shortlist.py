"""The shortlist's pure core: problematic images plus their neighbours, in priority order.

Shared by the select stage (:mod:`iris.select`, neighbours from Qdrant) and the crowd-round
strategies (:mod:`iris.rounds.strategies`, the seed's single round), so both order a
shortlist by the same rules:

1. problematic images before neighbours;
2. then more problematic neighbours first (dense ambiguous regions teach the most);
3. then a lower ensemble share first (the more unsure, the earlier);
4. then the id, so the order is total and reproducible.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from iris.pseudolabel.consensus import PROBLEMATIC
from iris.store.base import Hit
from iris.tables import SHORTLIST, Status, check

NEIGHBOUR = Status.NEIGHBOUR.value


def count_problematic_neighbours(
    hits: list[list[Hit]], ids: npt.NDArray[np.int64], problematic: set[int], *, k: int
) -> npt.NDArray[np.int32]:
    """How many of each image's ``k`` nearest (itself excluded) are problematic.

    Args:
        hits: per image, at least ``k + 1`` nearest points, best first.
        ids: (n,) the images' ids, in the order of ``hits``.
        problematic: ids of problematic images.
    """
    counts = np.zeros(len(ids), dtype=np.int32)
    for row, (own, row_hits) in enumerate(zip(ids.tolist(), hits, strict=True)):
        neighbours = [h.id for h in row_hits if h.id != own][:k]
        counts[row] = sum(1 for n in neighbours if n in problematic)
    return counts


def build_shortlist(
    pseudolabels: pl.DataFrame, problematic_neighbours: npt.NDArray[np.int32], *, budget: int = 0
) -> tuple[pl.DataFrame, int]:
    """Order problematic images and their neighbours by priority and apply the budget.

    Args:
        pseudolabels: ``PSEUDOLABELS`` rows of the pool (id, status, knn_share, ...).
        problematic_neighbours: (n,) per row, problematic images among its nearest.
        budget: keep at most this many (0 = all).

    Returns:
        The ``SHORTLIST`` table, priority 0 first, and how many the budget cut.
    """
    frame = pseudolabels.select("id", "status", "knn_share").with_columns(
        pl.Series("problematic_neighbours", problematic_neighbours, dtype=pl.Int32)
    )
    candidates = frame.filter(
        (pl.col("status") == PROBLEMATIC) | (pl.col("problematic_neighbours") > 0)
    ).with_columns(
        pl.when(pl.col("status") == PROBLEMATIC)
        .then(pl.lit(PROBLEMATIC))
        .otherwise(pl.lit(NEIGHBOUR))
        .alias("reason")
    )
    ordered = candidates.sort(
        [pl.col("reason") != PROBLEMATIC, "problematic_neighbours", "knn_share", "id"],
        descending=[False, True, False, False],
        nulls_last=True,
    )
    cut = 0
    if budget and ordered.height > budget:
        cut = ordered.height - budget
        ordered = ordered.head(budget)
    shortlist = ordered.with_row_index("priority").select(
        "id", "reason", "problematic_neighbours", pl.col("priority").cast(pl.Int32)
    )
    return check(shortlist, SHORTLIST, where="shortlist"), cut


def problematic_neighbour_counts(
    neighbour_ids: npt.NDArray[np.int64], problematic: npt.NDArray[np.int64]
) -> npt.NDArray[np.int32]:
    """How many of each row's neighbours are problematic (the array form of
    :func:`count_problematic_neighbours`).

    Args:
        neighbour_ids: (n, k) ids of each image's nearest images, itself excluded; -1 pads.
        problematic: ids of problematic images.
    """
    hit = np.isin(neighbour_ids, problematic) & (neighbour_ids >= 0)
    return hit.sum(axis=1).astype(np.int32)


__all__ = ["NEIGHBOUR", "build_shortlist", "count_problematic_neighbours", "problematic_neighbour_counts"]
