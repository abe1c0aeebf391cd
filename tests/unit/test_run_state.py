"""``state.json``: a damaged one is refused in one line that names it and says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.errors import WorkdirError
from iris.pipeline import RunState
from iris.workdir import Workdir

FIX = (
    "delete it to run the stages again (each resumes from what it already wrote; pass "
    "--ground-truth, --pool and --test again) or restore it from a backup"
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        (
            '{"stages": {"ingest": {"done": tr',
            "is truncated or not JSON (Expecting value at line 1 column 32)",
        ),
        ("\x00\x00\x00", "is truncated or not JSON (Expecting value at line 1 column 1)"),
        ("[1, 2]", "expected an object with a 'stages' object, got '[1, 2]'"),
        ('{"stages": []}', "expected an object with a 'stages' object, got '{\"stages\": []}'"),
    ],
)
def test_a_damaged_state_file_is_refused_with_what_to_do(workdir: Workdir, text: str, problem: str) -> None:
    path = workdir.root / "state.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WorkdirError) as refused:
        RunState(workdir)
    sep = " " if problem.startswith("is ") else ": "
    assert str(refused.value) == f"{path}{sep}{problem}; {FIX}"


def test_iris_run_on_a_truncated_state_file_is_one_line(workdir: Workdir) -> None:
    path = workdir.root / "state.json"
    path.write_text('{"stages": {', encoding="utf-8")
    result = CliRunner().invoke(main, ["--workdir", str(workdir.root), "run"])
    assert result.exit_code == 2
    assert result.output == (
        f"iris: error: {path} is truncated or not JSON (Expecting property name enclosed in double "
        f"quotes at line 1 column 13); {FIX}\n"
    )


def test_a_good_state_file_round_trips_and_lists_what_is_left(workdir: Workdir) -> None:
    state = RunState(workdir)
    state.finish("ingest", {"images": 3}, 1.234)
    state.finish("embed", {}, 2.0)
    again = RunState(workdir)
    assert again.done("ingest") and again.done("embed") and not again.done("pseudolabel")
    assert json.loads((workdir.root / "state.json").read_text())["stages"]["ingest"]["seconds"] == 1.23
    assert again.to_run("crowd") == ("pseudolabel", "select", "crowd")
    assert again.to_run()[-1] == "predict"
    assert not (workdir.root / "state.tmp").exists()


def test_an_old_state_file_without_manifests_still_loads(workdir: Workdir) -> None:
    (workdir.root / "state.json").write_text('{"stages": {}}', encoding="utf-8")
    assert RunState(workdir).data == {"stages": {}, "manifests": {}}


def test_a_missing_state_file_is_a_fresh_run(tmp_path: Path) -> None:
    assert RunState(Workdir(tmp_path)).to_run()[0] == "ingest"
