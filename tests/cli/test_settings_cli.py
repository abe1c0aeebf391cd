"""A bad setting stops a command before any stage starts: one line, the key named, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.workdir import init_workdir

# One invalid value per settings section, as a user would write it into iris init's file.
BAD = [
    ("task", 'label_column = "is_conifer"', 'label_column = ""', "task.label_column"),
    ("ingest", "timeout_s = 10.0", "timeout_s = -1.0", "ingest.timeout_s"),
    ("embed", "image_size = 128", "image_size = 8", "embed.image_size"),
    ("store", "hnsw_ef = 0", "hnsw_ef = -5", "store.hnsw_ef"),
    ("pseudolabel", "quorum = 0.8", "quorum = 1.5", "pseudolabel.quorum"),
    ("select", "budget = 0", "budget = -1", "select.budget"),
    ("crowd", "overlap = 5", "overlap = 2.9", "crowd.overlap"),
    ("rounds", "max_rounds = 6", "max_rounds = 0", "rounds.max_rounds"),
    ("aggregate", 'method = "dawid-skene"', 'method = "dawid_skene"', "aggregate.method"),
    ("propagate", "folds = 5", "folds = 1", "propagate.folds"),
    ("train", 'schedule = "noam"', 'schedule = "linear"', "train.schedule"),
]


def workdir_with(tmp_path: Path, section: str, old: str, new: str) -> Path:
    work = init_workdir(tmp_path / "w")
    text = work.config.read_text()
    header = f"[{section}]\n"
    head, body = text.split(header)
    assert old in body.split("\n[")[0], f"{old!r} is not in [{section}] of iris init's file"
    work.config.write_text(head + header + body.replace(old, new, 1))
    return work.root


def test_the_cases_cover_every_section() -> None:
    from iris.config import SECTIONS

    assert [case[0] for case in BAD] == list(SECTIONS)


@pytest.mark.parametrize(("section", "old", "new", "key"), BAD)
def test_iris_run_refuses_a_bad_value_naming_the_key(
    tmp_path: Path, section: str, old: str, new: str, key: str
) -> None:
    root = workdir_with(tmp_path, section, old, new)
    result = CliRunner().invoke(main, ["-w", str(root), "run"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    value = new.split(" = ")[1]
    assert lines[0].startswith(f"iris: error: {key} = {value} (from {root / 'iris.toml'}): expected ")
    assert not (root / "state.json").exists()  # no stage started


def test_a_top_level_scalar_is_one_line(tmp_path: Path) -> None:
    work = init_workdir(tmp_path / "w")
    work.config.write_text("train = 5\n" + work.config.read_text().split("[train]")[0])
    result = CliRunner().invoke(main, ["-w", str(work.root), "run"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"iris: error: train = 5 (from {work.config}): expected a [train] table of settings, "
        "e.g. [train] followed by key = value lines"
    ]


def test_a_zero_concurrency_flag_is_refused(tmp_path: Path) -> None:
    work = init_workdir(tmp_path / "w")
    result = CliRunner().invoke(main, ["-w", str(work.root), "ingest", "--concurrency", "0"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "iris: error: ingest.concurrency = 0 (from --concurrency): expected an integer >= 1"
    )


def test_a_bad_flag_with_another_name_is_named_as_typed(tmp_path: Path) -> None:
    work = init_workdir(tmp_path / "w")
    result = CliRunner().invoke(main, ["-w", str(work.root), "pseudolabel", "--folds", "1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "iris: error: pseudolabel.estimate_folds = 1 (from --folds): expected an integer 0 or >= 2"
    )


def test_a_misspelt_variable_is_one_warning_line(tmp_path: Path) -> None:
    root = workdir_with(tmp_path, "train", 'schedule = "noam"', 'schedule = "linear"')
    result = CliRunner().invoke(main, ["-w", str(root), "run"], env={"IRIS_CROWD_OVERLP": "5"})
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "iris: warning: IRIS_CROWD_OVERLP is not an iris setting and is ignored; "
        "the nearest is IRIS_CROWD_OVERLAP (crowd.overlap)"
    )


def test_python_m_iris_run_exits_2_with_the_key(tmp_path: Path) -> None:
    """The real entry point, in a fresh interpreter (the same path a user's shell takes)."""
    root = workdir_with(tmp_path, "crowd", "overlap = 5", "overlap = 2.9")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "iris", "-w", str(root), "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"iris: error: crowd.overlap = 2.9 (from {root / 'iris.toml'}): expected an integer >= 1"
    )


def test_a_misspelt_variable_is_warned_once_on_stderr_by_the_real_entry_point(tmp_path: Path) -> None:
    """Settings that are fine apart from the stray variable: the command goes on (here to its
    next complaint), and the warning is on stderr exactly once, as one line."""
    root = init_workdir(tmp_path / "w").root
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "IRIS_CROWD_OVERLP": "5"}
    done = subprocess.run(
        [sys.executable, "-m", "iris", "-w", str(root), "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "iris: warning: IRIS_CROWD_OVERLP is not an iris setting and is ignored; "
        "the nearest is IRIS_CROWD_OVERLAP (crowd.overlap)",
        "iris: error: iris run needs manifests: pass --ground-truth, --pool and --test",
    ]
