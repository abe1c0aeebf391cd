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
