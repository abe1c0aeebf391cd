"""A truncated tables/images.parquet: ``iris run`` stops with one line, and its advice works."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from iris.cli import main
from iris.workdir import init_workdir


@pytest.fixture(autouse=True)
def _one_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """This ground truth holds one image of each class; ingest's minimum is five by default."""
    monkeypatch.setenv("IRIS_INGEST_MIN_PER_CLASS", "1")


def ingested_workdir(tmp_path: Path) -> Path:
    for i, colour in enumerate(["red", "blue", "green", "white", "black", "yellow"]):
        Image.new("RGB", (16, 16), colour).save(tmp_path / f"i{i}.png")
    (tmp_path / "gt.tsv").write_text("downloadUrl\tis_conifer\ni0.png\tTRUE\ni1.png\tFALSE\n")
    (tmp_path / "pool.txt").write_text("i2.png\ni3.png\n")
    (tmp_path / "test.txt").write_text("i4.png\ni5.png\n")
    root = init_workdir(tmp_path / "w").root
    args = ["--ground-truth", str(tmp_path / "gt.tsv"), "--pool", str(tmp_path / "pool.txt")]
    args += ["--test", str(tmp_path / "test.txt"), "--until", "ingest"]
    done = CliRunner().invoke(main, ["-w", str(root), "run", *args])
    assert done.exit_code == 0, done.output
    return root


def test_a_truncated_images_table_is_one_line_then_redo_ingest_repairs_it(tmp_path: Path) -> None:
    root = ingested_workdir(tmp_path)
    table = root / "tables" / "images.parquet"
    whole = table.read_bytes()
    table.write_bytes(whole[: len(whole) // 2])

    result = CliRunner().invoke(main, ["-w", str(root), "run", "--until", "embed"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"iris: error: {table} is damaged ({len(whole) // 2} bytes, not a readable parquet file: "
        "parquet: File out of specification: The file must end with PAR1 or PARE); "
        "delete it and write it again with `iris run --redo ingest`"
    ]

    table.unlink()
    redone = CliRunner().invoke(main, ["-w", str(root), "run", "--redo", "ingest", "--until", "ingest"])
    assert redone.exit_code == 0, redone.output
    stats = CliRunner().invoke(main, ["-w", str(root), "data", "stats", "--json"])
    assert stats.exit_code == 0, stats.output


def test_an_empty_images_table_is_one_line(tmp_path: Path) -> None:
    root = ingested_workdir(tmp_path)
    (root / "tables" / "images.parquet").write_bytes(b"")
    result = CliRunner().invoke(main, ["-w", str(root), "data", "stats"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"iris: error: {root / 'tables' / 'images.parquet'} is damaged (0 bytes, not a readable parquet "
        "file: parquet: File out of specification: A Parquet file must contain a header and footer with "
        "at least 12 bytes); delete it and write it again with `iris run --redo ingest`"
    ]
