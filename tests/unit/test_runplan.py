"""The run plan: which stages ``iris run`` re-runs and why, from recorded fingerprints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from iris.config import Settings
from iris.pipeline import STAGE_NAMES, STAGES
from iris.runplan import READS, Step, changes, fingerprint, ingest_manifests, plan_run, rerun_line
from iris.workdir import init_workdir

STAGES3 = ("ingest", "embed", "pseudolabel")
SAME = {"table images": "a", "settings [embed]": "b"}


def _done(inputs: dict[str, str] | None = None) -> dict[str, object]:
    record: dict[str, object] = {"done": True, "summary": {}}
    if inputs is not None:
        record["inputs"] = inputs
    return record


def test_every_stage_declares_what_it_reads() -> None:
    assert set(READS) == set(STAGE_NAMES)
    assert [s.name for s in STAGES] == list(STAGE_NAMES)


def test_nothing_changed_runs_nothing() -> None:
    recorded = {name: _done(SAME) for name in STAGES3}
    steps = plan_run(STAGES3, recorded, lambda name: dict(SAME))
    assert steps == [Step(name, False, "inputs unchanged") for name in STAGES3]
    assert rerun_line(steps, recorded) is None


def test_a_change_reruns_the_stage_and_every_later_one() -> None:
    recorded = {name: _done(SAME) for name in STAGES3}
    changed = {"table images": "NEW", "settings [embed]": "b"}
    steps = plan_run(STAGES3, recorded, lambda name: changed if name == "embed" else dict(SAME))
    assert steps == [
        Step("ingest", False, "inputs unchanged"),
        Step("embed", True, "table images changed"),
        Step("pseudolabel", True, "after embed"),
    ]
    assert rerun_line(steps, recorded) == "re-running embed and the stage after it: table images changed"


def test_later_fingerprints_are_not_taken_once_a_stage_runs() -> None:
    asked: list[str] = []

    def current(name: str) -> dict[str, str]:
        asked.append(name)
        return {"x": "changed"}

    plan_run(STAGES3, {name: _done({"x": "old"}) for name in STAGES3}, current)
    assert asked == ["ingest"]


@pytest.mark.parametrize(
    ("recorded", "reason", "line"),
    [
        ({}, "not finished", None),  # a first run is not a re-run
        ({"ingest": {"done": False}}, "not finished", None),
        (
            {"ingest": _done()},
            "no input fingerprint recorded",
            "re-running ingest: no input fingerprint recorded",
        ),
    ],
)
def test_unfinished_or_unfingerprinted_stages_run(recorded: dict, reason: str, line: str | None) -> None:
    steps = plan_run(("ingest",), recorded, lambda name: dict(SAME))
    assert steps == [Step("ingest", True, reason)]
    assert rerun_line(steps, recorded) == line


def test_redo_and_until() -> None:
    recorded = {name: _done(SAME) for name in STAGE_NAMES}
    steps = plan_run(STAGE_NAMES, recorded, lambda name: dict(SAME), redo=("propagate",), until="train")
    assert [s.row for s in steps[-3:]] == [
        {"stage": "propagate", "plan": "will run", "reason": "--redo propagate"},
        {"stage": "train", "plan": "will run", "reason": "after propagate"},
        {"stage": "predict", "plan": "skip", "reason": "after --until train"},
    ]
    assert rerun_line(steps, recorded) == "re-running propagate and the stage after it: --redo propagate"
    steps = plan_run(STAGE_NAMES, recorded, lambda name: dict(SAME), redo=("pseudolabel",))
    assert (
        rerun_line(steps, recorded) == "re-running pseudolabel and the 6 stages after it: --redo pseudolabel"
    )


def test_changes_name_what_differs() -> None:
    assert changes({"a": "1", "b": "2", "gone": "3"}, {"a": "1", "b": "9", "new": "4"}) == [
        "b changed",
        "new changed",
        "gone is no longer read",
    ]


def test_fingerprint_follows_content_and_settings_not_how(tmp_path: Path) -> None:
    wd = init_workdir(tmp_path / "work")
    gt = tmp_path / "gt.tsv"
    gt.write_text("downloadUrl\tis_conifer\na.png\tTRUE\n")
    found = ingest_manifests(wd, {"ground_truth": str(gt), "pool": [], "test": None})
    assert found == {"gt": [str(gt)], "pool": [], "test": []}
    settings = Settings()
    first = fingerprint("ingest", wd, settings, found)
    assert set(first) == {f"ground-truth manifest {gt}", "settings [task]", "settings [ingest]"}
    # How it runs (workers, concurrency) is not what it reads.
    faster = replace(settings, ingest=replace(settings.ingest, workers=4, concurrency=2))
    assert fingerprint("ingest", wd, faster, found) == first
    gt.write_text("downloadUrl\tis_conifer\na.png\tFALSE\n")
    assert changes(first, fingerprint("ingest", wd, settings, found)) == [
        f"ground-truth manifest {gt} changed"
    ]

    tables = fingerprint("propagate", wd, settings, found)
    assert tables["table images"] == "missing"
    (wd.tables / "images.parquet").write_bytes(b"x")
    assert changes(tables, fingerprint("propagate", wd, settings, found)) == ["table images changed"]
    other = replace(settings, propagate=replace(settings.propagate, ks=(3,)))
    assert changes(tables, fingerprint("propagate", wd, other, found)) == [
        "table images changed",
        "settings [propagate] changed",
    ]


def test_ingest_manifests_fall_back_to_the_last_ingest_record(tmp_path: Path) -> None:
    wd = init_workdir(tmp_path / "work")
    assert ingest_manifests(wd, None) == {"gt": [], "pool": [], "test": []}
    (wd.tables / "ingest.json").write_text(
        json.dumps(
            {"splits": {"gt": [{"path": "/d/gt.tsv"}], "pool": [{"path": "/d/p1"}, {"path": "/d/p2"}]}}
        )
    )
    assert ingest_manifests(wd, None) == {"gt": ["/d/gt.tsv"], "pool": ["/d/p1", "/d/p2"], "test": []}
    assert ingest_manifests(wd, {"pool": ["/e/p"]}) == {"gt": ["/d/gt.tsv"], "pool": ["/e/p"], "test": []}
