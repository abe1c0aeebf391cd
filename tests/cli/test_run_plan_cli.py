"""``iris run --dry-run`` and ``iris ingest`` then ``iris run``, through CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from iris.cli import main
from iris.workdir import Workdir

COLUMNS = ("--source-column", "url", "--label-column", "label", "--positive", "yes", "--negative", "no")


@pytest.fixture(autouse=True)
def _one_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """These manifests hold one image of each class; ingest's minimum is five by default."""
    monkeypatch.setenv("IRIS_INGEST_MIN_PER_CLASS", "1")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for n in range(4):
        pixels = np.random.default_rng(n).integers(0, 256, (10, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{n}.png")
    (folder / "gt.tsv").write_text("url\tlabel\n0.png\tyes\n1.png\tno\n")
    (folder / "pool.txt").write_text("2.png\n")
    (folder / "test.tsv").write_text("url\n3.png\n")
    return folder


def _iris(workdir: Workdir, *args: str) -> str:
    result = CliRunner().invoke(main, ["-w", str(workdir.root), *args])
    assert result.exit_code == 0, result.output
    return str(result.output)


def _plan(workdir: Workdir, *args: str) -> list[tuple[str, str, str]]:
    lines = _iris(workdir, "run", "--dry-run", *args).splitlines()
    assert lines[0] == "plan (dry run: nothing is run)"
    assert lines[1].split() == ["stage", "plan", "reason"]
    rows = []
    for line in lines[3:]:
        stage, rest = line.split(None, 1)
        plan = "will run" if rest.startswith("will run") else "skip"
        rows.append((stage, plan, rest.removeprefix(plan).strip()))
    return rows


def _ingest(workdir: Workdir, data: Path) -> None:
    _iris(
        workdir,
        "ingest",
        *("--ground-truth", str(data / "gt.tsv"), "--pool", str(data / "pool.txt")),
        *("--test", str(data / "test.tsv"), *COLUMNS),
    )


def test_run_after_ingest_needs_no_manifests(workdir: Workdir, data: Path) -> None:
    _ingest(workdir, data)
    assert _plan(workdir) == [
        ("ingest", "will run", "not finished"),
        ("embed", "will run", "after ingest"),
        ("pseudolabel", "will run", "after ingest"),
        ("select", "will run", "after ingest"),
        ("crowd", "will run", "after ingest"),
        ("aggregate", "will run", "after ingest"),
        ("propagate", "will run", "after ingest"),
        ("train", "will run", "after ingest"),
        ("predict", "will run", "after ingest"),
    ]
    out = _iris(workdir, "run", "--until", "ingest")
    assert "[ingest] finished" in out
    assert "re-running" not in out
    # ingest read the manifests (and the columns) the standalone ingest recorded
    state = json.loads((workdir.root / "state.json").read_text())
    assert state["stages"]["ingest"]["summary"]["counts"] == {"gt": 2, "pool": 1, "test": 1}


def test_dry_run_names_the_changed_manifest_and_changes_nothing(workdir: Workdir, data: Path) -> None:
    _ingest(workdir, data)
    _iris(workdir, "run", "--until", "ingest")
    assert _plan(workdir, "--until", "embed") == [
        ("ingest", "skip", "inputs unchanged"),
        ("embed", "will run", "not finished"),
        ("pseudolabel", "skip", "after --until embed"),
        ("select", "skip", "after --until embed"),
        ("crowd", "skip", "after --until embed"),
        ("aggregate", "skip", "after --until embed"),
        ("propagate", "skip", "after --until embed"),
        ("train", "skip", "after --until embed"),
        ("predict", "skip", "after --until embed"),
    ]
    state = (workdir.root / "state.json").read_text()
    (data / "gt.tsv").write_text("url\tlabel\n0.png\tno\n1.png\tyes\n")
    assert _plan(workdir, "--until", "ingest") == [
        ("ingest", "will run", f"ground-truth manifest {data / 'gt.tsv'} changed"),
        *[(name, "skip", "after --until ingest") for name in
          ("embed", "pseudolabel", "select", "crowd", "aggregate", "propagate", "train", "predict")],
    ]  # fmt: skip
    assert (workdir.root / "state.json").read_text() == state
    out = _iris(workdir, "run", "--until", "ingest")
    assert (
        f"re-running ingest and the stage after it: ground-truth manifest {data / 'gt.tsv'} changed"
        not in out
    )
    assert f"re-running ingest: ground-truth manifest {data / 'gt.tsv'} changed" in out


def test_run_without_any_manifest_says_so(workdir: Workdir) -> None:
    result = CliRunner().invoke(main, ["-w", str(workdir.root), "run", "--dry-run"])
    assert result.exit_code == 2
    assert result.output == "iris: error: iris run needs manifests: pass --ground-truth, --pool and --test\n"
