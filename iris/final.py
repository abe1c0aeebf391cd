"""The final dataset: ground truth, crowd labels and automatic labels in one table.

Precedence, highest first: ground truth (origin ``gt``, confidence 1.0), aggregated crowd
labels (``crowd``, the aggregator's confidence), automatic labels (``auto``): those of the
crowd rounds' labeler (``round_labels``, confidence = the probability of the label it
gives, ``(1 + certainty) / 2``) when the crowd ran in rounds, else the pseudo-labels
(confidence = the ensemble's ``knn_share``). A lower source never overwrites a higher one;
where they disagree the disagreement is reported as a conflict. Test images never get a
final label.

FINAL_CONFLICTS lives in :mod:`iris.tables` with every other schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from iris import tables
from iris.errors import StageOrderError
from iris.tables import (
    AGGREGATED,
    FINAL_CONFLICTS,
    FINAL_LABELS,
    IMAGES,
    PSEUDOLABELS,
    ROUND_LABELS,
    Origin,
    Split,
)
from iris.workdir import Workdir

PRECEDENCE: tuple[str, ...] = (Origin.GT.value, Origin.CROWD.value, Origin.AUTO.value)


@dataclass(frozen=True)
class FinalCounts:
    """Rows per origin and conflicts per kind."""

    gt: int
    crowd: int
    auto: int
    conflicts: dict[str, int]


def combine_labels(
    images: pl.DataFrame,
    *,
    aggregated: pl.DataFrame | None = None,
    pseudolabels: pl.DataFrame | None = None,
    round_labels: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Merge the label sources with precedence gt > crowd > auto.

    Args:
        images: IMAGES table (id, split, label, ...); labeled non-test rows are ground truth.
        aggregated: AGGREGATED table (task, label, confidence, n_answers), or None.
        pseudolabels: PSEUDOLABELS table (id, knn_share, auto_label, ...), or None.
        round_labels: ROUND_LABELS table (id, auto_label, certainty), or None; when given
            it is the automatic source and ``pseudolabels`` is not used.

    Returns:
        ``(final, conflicts)``: FINAL_LABELS rows sorted by id, one per labeled image, and
        FINAL_CONFLICTS rows sorted by id and kind.
    """
    images = tables.check(images, IMAGES, where="images")
    eligible = images.filter(pl.col("split") != Split.TEST.value).select("id")
    gt = images.filter((pl.col("split") != Split.TEST.value) & pl.col("label").is_not_null()).select(
        "id", "label", origin=pl.lit(Origin.GT.value), confidence=pl.lit(1.0)
    )
    sources = [gt]
    if aggregated is not None:
        aggregated = tables.check(aggregated, AGGREGATED, where="aggregated")
        sources.append(
            aggregated.filter(pl.col("label").is_not_null())
            .select(id="task", label="label", origin=pl.lit(Origin.CROWD.value), confidence="confidence")
            .join(eligible, on="id", how="semi")
        )
    if round_labels is not None:
        round_labels = tables.check(round_labels, ROUND_LABELS, where="round_labels")
        sources.append(
            round_labels.select(
                "id",
                label="auto_label",
                origin=pl.lit(Origin.AUTO.value),
                confidence=(1 + pl.col("certainty")) / 2,
            ).join(eligible, on="id", how="semi")
        )
    elif pseudolabels is not None:
        pseudolabels = tables.check(pseudolabels, PSEUDOLABELS, where="pseudolabels")
        sources.append(
            pseudolabels.filter(pl.col("auto_label").is_not_null())
            .select("id", label="auto_label", origin=pl.lit(Origin.AUTO.value), confidence="knn_share")
            .join(eligible, on="id", how="semi")
        )
    candidates = tables.check(
        pl.concat([tables.check(s, FINAL_LABELS, where="final") for s in sources]),
        FINAL_LABELS,
        where="final",
    ).with_columns(
        rank=pl.col("origin").replace_strict({o: i for i, o in enumerate(PRECEDENCE)}, return_dtype=pl.Int8)
    )
    # One source should not label an image twice, but if it does the first row wins.
    candidates = candidates.unique(["id", "origin"], keep="first", maintain_order=True)
    ranked = candidates.sort(["id", "rank"])
    final = ranked.unique("id", keep="first", maintain_order=True)
    kept = final.select("id", kept_label="label", kept_origin="origin")
    conflicts = (
        ranked.join(kept, on="id")
        .filter((pl.col("origin") != pl.col("kept_origin")) & (pl.col("label") != pl.col("kept_label")))
        .select(
            "id",
            kind=pl.col("origin") + pl.lit("-vs-") + pl.col("kept_origin"),
            kept_label="kept_label",
            kept_origin="kept_origin",
            other_label="label",
            other_origin="origin",
            other_confidence="confidence",
        )
        .sort(["id", "kind"])
    )
    return (
        tables.check(final.drop("rank"), FINAL_LABELS, where="final").select(list(FINAL_LABELS)),
        tables.check(conflicts, FINAL_CONFLICTS, where="conflicts"),
    )


def build_final(workdir: Workdir, *, rounds: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read images, aggregated crowd labels and automatic labels and combine them.

    The crowd and pseudo-label tables are optional (a run without a crowd yet is fine);
    the images table is required. With ``rounds`` the automatic labels are the crowd
    rounds' (``tables/round_labels``): pseudo-labels without them are refused, never
    taken in their place.

    Returns:
        ``(final, conflicts)`` as :func:`combine_labels`.

    Raises:
        StageOrderError: ``rounds``, pseudo-labels and no ``tables/round_labels`` (the
            crowd stage has not finished its rounds).
    """
    images = tables.read(workdir.table("images"), IMAGES)
    aggregated = (
        tables.read(workdir.table("aggregated"), AGGREGATED) if workdir.table("aggregated").exists() else None
    )
    pseudo = (
        tables.read(workdir.table("pseudolabels"), PSEUDOLABELS)
        if workdir.table("pseudolabels").exists()
        else None
    )
    if not rounds:
        return combine_labels(images, aggregated=aggregated, pseudolabels=pseudo)
    path = workdir.table("round_labels")
    if not path.exists() and pseudo is None:
        return combine_labels(images, aggregated=aggregated)  # no automatic labels of any kind yet
    if not path.exists():
        raise StageOrderError(
            f"{path} is missing: the crowd stage writes it after its last round "
            '(run `iris run`, or set [rounds] strategy = "seed" to label from the pseudo-labels)'
        )
    return combine_labels(images, aggregated=aggregated, round_labels=tables.read(path, ROUND_LABELS))


def count(final: pl.DataFrame, conflicts: pl.DataFrame) -> FinalCounts:
    """Rows per origin and conflicts per kind."""
    per_origin = dict(final.group_by("origin").len().iter_rows())
    per_kind = dict(conflicts.group_by("kind").len().sort("kind").iter_rows())
    return FinalCounts(
        gt=per_origin.get(Origin.GT.value, 0),
        crowd=per_origin.get(Origin.CROWD.value, 0),
        auto=per_origin.get(Origin.AUTO.value, 0),
        conflicts={str(k): int(v) for k, v in per_kind.items()},
    )
