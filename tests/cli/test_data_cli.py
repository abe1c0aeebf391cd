"""``iris data stats`` and ``iris data fashion-mnist`` through CliRunner."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from iris.cli import main
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
