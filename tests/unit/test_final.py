"""The final dataset: precedence gt > crowd > auto, conflicts, optional inputs."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris import tables
from iris.errors import ColumnError, StageOrderError
from iris.final import FINAL_CONFLICTS, build_final, combine_labels, count
from iris.tables import AGGREGATED, FINAL_LABELS, IMAGES, PSEUDOLABELS


def images_frame(splits: list[str], labels: list[int | None]) -> pl.DataFrame:
    n = len(splits)
    return tables.check(
        pl.DataFrame(
            {
                "id": list(range(1, n + 1)),
                "source": [f"img{i}.png" for i in range(1, n + 1)],
                "path": [f"images/{i}.png" for i in range(1, n + 1)],
                "split": splits,
                "label": labels,
                "width": [8] * n,
                "height": [8] * n,
                "sha256": [str(i) for i in range(n)],
            }
        ),
        IMAGES,
        where="test",
    )


def aggregated_frame(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return tables.check(
        pl.DataFrame(
            {
                "task": [r[0] for r in rows],
                "label": [r[1] for r in rows],
                "confidence": [r[2] for r in rows],
                "n_answers": [3] * len(rows),
            },
            schema={"task": pl.Int64, "label": pl.Int8, "confidence": pl.Float64, "n_answers": pl.Int32},
        ),
        AGGREGATED,
        where="test",
    )


def pseudo_frame(rows: list[tuple[int, int | None, float]]) -> pl.DataFrame:
    return tables.check(
        pl.DataFrame(
            {
                "id": [r[0] for r in rows],
                "knn_label": [r[1] for r in rows],
                "knn_share": [r[2] for r in rows],
                "cluster": [0] * len(rows),
                "cluster_label": [r[1] for r in rows],
                "auto_label": [r[1] for r in rows],
                "status": ["auto" if r[1] is not None else "problematic" for r in rows],
            },
            schema={
                "id": pl.Int64,
                "knn_label": pl.Int8,
                "knn_share": pl.Float64,
                "cluster": pl.Int32,
                "cluster_label": pl.Int8,
                "auto_label": pl.Int8,
                "status": pl.String,
            },
        ),
        PSEUDOLABELS,
        where="test",
    )


# ids 1-2 gt, 3-6 pool, 7 test
IMAGES_TOY = images_frame(
    ["gt", "gt", "pool", "pool", "pool", "pool", "test"], [1, 0, None, None, None, None, None]
)


def test_toy_precedence_and_conflicts() -> None:
    aggregated = aggregated_frame([(1, 0, 0.9), (3, 1, 0.8), (4, 0, 0.7), (7, 1, 0.9)])
    pseudo = pseudo_frame([(3, 0, 0.9), (4, 0, 0.95), (5, 1, 0.85), (6, None, 0.4)])

    final, conflicts = combine_labels(IMAGES_TOY, aggregated=aggregated, pseudolabels=pseudo)

    assert final.schema == pl.Schema(FINAL_LABELS)
    assert final.rows() == [
        (1, 1, "gt", 1.0),  # crowd said 0: ground truth wins
        (2, 0, "gt", 1.0),
        (3, 1, "crowd", 0.8),  # auto said 0: crowd wins
        (4, 0, "crowd", 0.7),  # auto agrees: no conflict
        (5, 1, "auto", 0.85),
    ]  # 6 has no label, 7 is a test image: never in the final set
    assert conflicts.schema == pl.Schema(FINAL_CONFLICTS)
    assert conflicts.select("id", "kind", "kept_label", "other_label").rows() == [
        (1, "crowd-vs-gt", 1, 0),
        (3, "auto-vs-crowd", 1, 0),
    ]
    counts = count(final, conflicts)
    assert (counts.gt, counts.crowd, counts.auto) == (2, 2, 1)
    assert counts.conflicts == {"auto-vs-crowd": 1, "crowd-vs-gt": 1}


def test_missing_optional_inputs_give_ground_truth_only(workdir) -> None:
    tables.write(IMAGES_TOY, workdir.table("images"))
    final, conflicts = build_final(workdir)
    assert final["origin"].to_list() == ["gt", "gt"]
    assert conflicts.height == 0


def test_missing_images_table_names_the_stage(workdir) -> None:
    with pytest.raises(StageOrderError, match="iris ingest"):
        build_final(workdir)


def test_missing_column_is_named() -> None:
    bad = pl.DataFrame({"task": [3], "label": [1]})
    with pytest.raises(ColumnError, match=r"aggregated: missing column.*confidence"):
        combine_labels(IMAGES_TOY, aggregated=bad)


labels = st.one_of(st.none(), st.integers(0, 1))


@settings(max_examples=60, deadline=None)
@given(
    gt=st.lists(labels, min_size=1, max_size=12),
    crowd=st.lists(st.tuples(labels, st.floats(0.5, 1.0)), min_size=12, max_size=12),
    auto=st.lists(st.tuples(labels, st.floats(0.5, 1.0)), min_size=12, max_size=12),
)
def test_precedence_property(
    gt: list[int | None], crowd: list[tuple[int | None, float]], auto: list[tuple[int | None, float]]
) -> None:
    n = len(gt)
    images = images_frame(["gt" if g is not None else "pool" for g in gt], gt)
    aggregated = aggregated_frame(
        [(i + 1, lab, c) for i, (lab, c) in enumerate(crowd[:n]) if lab is not None]
    )
    pseudo = pseudo_frame([(i + 1, lab, c) for i, (lab, c) in enumerate(auto[:n])])

    final, conflicts = combine_labels(images, aggregated=aggregated, pseudolabels=pseudo)

    by_id = {row[0]: row for row in final.rows()}
    assert final["id"].is_unique().all()
    for i in range(n):
        crowd_label, crowd_conf = crowd[i]
        auto_label, auto_conf = auto[i]
        row = by_id.get(i + 1)
        if gt[i] is not None:  # ground truth is never overwritten
            assert row == (i + 1, gt[i], "gt", 1.0)
        elif crowd_label is not None:  # crowd beats auto
            assert row == (i + 1, crowd_label, "crowd", crowd_conf)
        elif auto_label is not None:
            assert row == (i + 1, auto_label, "auto", auto_conf)
        else:
            assert row is None
    # every disagreement with the kept label is reported, and only those
    expected_conflicts = 0
    for i in range(n):
        kept = by_id.get(i + 1)
        if kept is None:
            continue
        others = [lab for lab, origin in [(crowd[i][0], "crowd"), (auto[i][0], "auto")] if origin != kept[2]]
        expected_conflicts += sum(1 for lab in others if lab is not None and lab != kept[1])
    assert conflicts.height == expected_conflicts
