"""Each image's pipeline status, read from the tables.

An image enters the store with the status embed gives it (``gt``, ``unlabeled``, ``test``:
payload key ``status``, which never changes). The statuses pseudolabel and select give
(``auto``, ``problematic``, ``neighbour``) live in their tables only
(``tables/pseudolabels``, ``tables/shortlist``): Qdrant moves every point whose payload
changes out of its HNSW segment, and re-indexing a million pool points cost more than
both stages together. ``iris similar`` and ``iris store info`` read the status here.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from iris.store.base import Filter
from iris.tables import IMAGES, PSEUDOLABELS, SHORTLIST, read
from iris.vocabulary import Split, Status
from iris.workdir import Workdir

FIXED: frozenset[str] = frozenset({Status.GT.value, Status.TEST.value})
"""Statuses no stage changes after embed: the payload's are right."""


def statuses(workdir: Workdir) -> pl.DataFrame | None:
    """``id``, ``status``, ``pseudo_label`` of every ingested image; None before ``iris ingest``."""
    if not workdir.table("images").exists():
        return None
    images = read(workdir.table("images"), IMAGES).select("id", "split", "label")
    frame = images.select(
        "id",
        status=pl.when(pl.col("split") == Split.TEST.value)
        .then(pl.lit(Status.TEST.value))
        .when(pl.col("label").is_not_null())
        .then(pl.lit(Status.GT.value))
        .otherwise(pl.lit(Status.UNLABELED.value)),
        pseudo_label=pl.lit(None, dtype=pl.Int8),
    )
    if workdir.table("pseudolabels").exists():
        pseudo = read(workdir.table("pseudolabels"), PSEUDOLABELS).select(
            "id", later="status", auto="auto_label"
        )
        if workdir.table("shortlist").exists():
            neighbours = read(workdir.table("shortlist"), SHORTLIST).filter(
                pl.col("reason") == Status.NEIGHBOUR.value
            )
            pseudo = pseudo.with_columns(
                later=pl.when(pl.col("id").is_in(neighbours["id"].implode()))
                .then(pl.lit(Status.NEIGHBOUR.value))
                .otherwise("later")
            )
        frame = (
            frame.join(pseudo, on="id", how="left")
            .with_columns(
                # Only an unlabeled pool image takes a later status (a table from before a
                # ground-truth edit may still list an image that is now labeled).
                status=pl.when((pl.col("status") == Status.UNLABELED.value) & pl.col("later").is_not_null())
                .then("later")
                .otherwise("status"),
                pseudo_label=pl.when(pl.col("status") == Status.UNLABELED.value)
                .then("auto")
                .otherwise("pseudo_label"),
            )
            .select("id", "status", "pseudo_label")
        )
    return frame


def lookup(workdir: Workdir, ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
    """``id -> (status, pseudo_label)`` for ``ids`` that the tables know (none before ingest)."""
    frame = statuses(workdir)
    if frame is None:
        return {}
    rows = frame.filter(pl.col("id").is_in(list(ids))).iter_rows()
    return {int(i): (str(s), None if p is None else int(p)) for i, s, p in rows}


def status_filter(workdir: Workdir, wanted: Sequence[str]) -> Filter | None:
    """A store filter keeping the points whose current status is one of ``wanted``.

    ``gt`` and ``test`` alone filter on the payload; any other status becomes the ids the
    tables give it. Without an images table the payload's status is all there is.
    """
    if not wanted:
        return None
    frame = None if set(wanted) <= FIXED else statuses(workdir)
    if frame is None:
        return Filter(must={"status": list(wanted)})
    ids = frame.filter(pl.col("status").is_in(list(wanted)))["id"].to_list()
    return Filter(ids=frozenset(int(i) for i in ids))


def counts(workdir: Workdir) -> dict[str, int] | None:
    """Images per current status (only statuses that occur); None before ``iris ingest``."""
    frame = statuses(workdir)
    if frame is None:
        return None
    grouped = frame.group_by("status").len()
    order = [s.value for s in Status]
    return {s: n for s, n in sorted(grouped.iter_rows(), key=lambda r: order.index(r[0]))}
