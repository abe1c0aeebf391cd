"""The public API: what ``import iris`` promises, pinned so a change to it is deliberate."""

from __future__ import annotations

import iris
from iris.cli import main


def test_top_level_exports_are_pinned() -> None:
    assert sorted(iris.__all__) == [
        "IrisError",
        "Settings",
        "Workdir",
        "find_workdir",
        "init_workdir",
        "load_settings",
    ]
    for name in iris.__all__:
        assert getattr(iris, name) is not None


def test_every_pipeline_stage_has_a_command() -> None:
    from iris.pipeline import STAGE_NAMES

    commands = set(main.list_commands(None))  # type: ignore[arg-type]
    expected = {
        "ingest",
        "embed",
        "pseudolabel",
        "select",
        "crowd",
        "aggregate",
        "propagate",
        "train",
        "predict",
    }
    assert set(STAGE_NAMES) == expected
    assert expected | {"init", "run", "demo", "similar", "store", "data"} <= commands


def test_the_stage_contract_and_shared_cores_are_pinned() -> None:
    """Every stage is ``run(ctx) -> StageReport``; kNN, stage kit and vocabulary: one module each."""
    import iris.neighbours
    import iris.stagekit
    from iris import contract, tables
    from iris.pipeline import STAGES

    assert [s.module for s in STAGES] == [
        "iris.data.ingest",
        "iris.embed.stage",
        "iris.pseudolabel.stage",
        "iris.select",
        "iris.crowd.stage",
        "iris.aggregate",
        "iris.propagate",
        "iris.train.loop",
        "iris.train.predict",
    ]
    assert {"StageContext", "StageReport", "report_dict"} <= set(dir(contract))
    assert sorted(iris.neighbours.__all__) == [
        "EXACT",
        "METRICS",
        "Metric",
        "NO_LABEL",
        "Neighbours",
        "Vote",
        "WEIGHTINGS",
        "Weighting",
        "assign_folds",
        "distance_from_similarity",
        "neighbours_from_hits",
        "similarity_from_score",
        "vote",
        "weights",
    ]
    assert {"CLUSTERED_SPLITS", "Points", "Stopwatch", "batched_query", "query_by_id", "read_points"} <= set(
        dir(iris.stagekit)
    )
    assert tables.SPLITS == ("gt", "pool", "test")
    assert tables.ORIGINS == ("gt", "crowd", "auto", "propagated")
    assert tables.STATUSES == ("gt", "unlabeled", "auto", "problematic", "neighbour", "test")
    assert tables.Status.AUTO == "auto" and f"{tables.Origin.CROWD}" == "crowd"  # stored as plain strings
    from iris import vocabulary

    assert tables.Split is vocabulary.Split  # one definition, re-exported beside the schemas
    assert vocabulary.WEIGHTINGS == ("uniform", "distance")
    assert vocabulary.METRICS == ("cosine", "dot", "euclid")
