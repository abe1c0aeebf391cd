"""``iris data stats`` and ``iris data fashion-mnist`` through CliRunner."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from iris.cli import main
from iris.data.fashion_mnist import DATASET_DIR
from iris.workdir import Workdir


def test_fashion_mnist_then_ingest_then_stats(tmp_path: Path, workdir: Workdir) -> None:
    runner = CliRunner()
    out = tmp_path / "fm"
    built = runner.invoke(main, ["data", "fashion-mnist", str(out), "--limit", "60", "--n-labeled", "10"])
    assert built.exit_code == 0, built.output
    assert "Shirt (positive) vs T-shirt/top (negative): 10 labeled, 50 pool, 10 test" in built.output
    command = next(line.strip() for line in built.output.splitlines() if line.strip().startswith("iris -w"))
    assert "--label-column is_shirt" in command
    args = shlex.split(command)[1:]
    args[1] = str(workdir.root)  # the printed command names WORK
    ingested = runner.invoke(main, args)
    assert ingested.exit_code == 0, ingested.output

    stats = runner.invoke(main, ["-w", str(workdir.root), "data", "stats"])
    assert stats.exit_code == 0, stats.output
    rows = [line.split() for line in stats.output.splitlines()]
    assert ["gt", "conifer", "5"] in rows and ["gt", "deciduous", "5"] in rows
    assert ["pool", "unlabeled", "50"] in rows and ["test", "unlabeled", "10"] in rows
    assert any(row[:2] == ["pool", "50"] and "28x28" in row for row in rows)
    png = workdir.reports / "data_stats.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 500


def test_stats_counts_rejects(tmp_path: Path, workdir: Workdir) -> None:
    (tmp_path / "pool.txt").write_text("a.png\nb.png\n")
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["-w", str(workdir.root), "ingest", "--pool", str(tmp_path / "pool.txt")]
        ).exit_code
        == 0
    )
    stats = runner.invoke(main, ["-w", str(workdir.root), "data", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert '"reason": "missing-file"' in stats.output and '"rows": 2' in stats.output


def test_stats_before_ingest_is_one_line(workdir: Workdir) -> None:
    result = CliRunner().invoke(main, ["-w", str(workdir.root), "data", "stats"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "run `iris ingest` first" in result.output


def test_fashion_mnist_bad_classes_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["data", "fashion-mnist", str(tmp_path), "--positive", "3", "--negative", "3"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("iris: error: --positive and --negative are both 3")


def test_init_then_fashion_mnist_then_ingest_needs_no_label_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real sequence in the default work directory: `iris init` expects is_conifer, the
    Fashion-MNIST files carry is_shirt, and ingest takes their only is_* column, saying so."""
    if not (DATASET_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is not installed in {DATASET_DIR} (Debian package dataset-fashion-mnist)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IRIS_WORKDIR", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "W"]).exit_code == 0
    built = runner.invoke(main, ["data", "fashion-mnist", "fm", "--limit", "40", "--n-labeled", "10"])
    assert built.exit_code == 0, built.output
    monkeypatch.chdir(tmp_path / "W")
    fm = tmp_path / "fm"
    gt, pool, test = fm / "ground_truth.tsv", fm / "pool.tsv", fm / "test.xlsx"
    printed = next(line.strip() for line in built.output.splitlines() if line.strip().startswith("iris -w"))
    assert f"--ground-truth {gt.relative_to(tmp_path)} --pool {pool.relative_to(tmp_path)}" in printed
    ingested = runner.invoke(
        main, ["ingest", "--ground-truth", str(gt), "--pool", str(pool), "--test", str(test)]
    )
    assert ingested.exit_code == 0, ingested.output
    assert ingested.output.splitlines()[0] == (
        f"{gt}: no label column is_conifer; using is_shirt, its only is_* column "
        "(--label-column names another)"
    )
    rows = [line.split() for line in ingested.output.splitlines()]
    assert ["gt", "10", "5", "5"] in rows and ["pool", "30"] in rows and ["test", "6"] in rows
    record = json.loads((tmp_path / "W" / "tables" / "ingest.json").read_text())
    assert record["task"]["label_column"] == "is_shirt"
