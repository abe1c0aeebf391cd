"""``iris ingest`` through CliRunner: counts on success, one line and exit 2 on a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from iris import tables
from iris.cli import main
from iris.workdir import Workdir


@pytest.fixture(autouse=True)
def _small_ground_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """These fixtures label one to three images per class, under ``ingest.min_per_class``'s default."""
    monkeypatch.setenv("IRIS_INGEST_MIN_PER_CLASS", "1")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for n in range(6):
        pixels = np.random.default_rng(n).integers(0, 256, (10, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{n}.png")
    (folder / "gt.tsv").write_text("url\tlabel\n0.png\tyes\n1.png\tno\n")
    (folder / "pool.txt").write_text("2.png\n3.png\nmissing.png\n")
    (folder / "pool2.txt").write_text("4.png\n")
    (folder / "test.tsv").write_text("url\n5.png\n")
    return folder


def _run(workdir: Workdir, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["-w", str(workdir.root), "ingest", *args])


def test_ingest_prints_counts_and_rejects(workdir: Workdir, data: Path) -> None:
    result = _run(
        workdir,
        *("--ground-truth", str(data / "gt.tsv"), "--pool", str(data / "pool.txt")),
        *("--pool", str(data / "pool2.txt"), "--test", str(data / "test.tsv")),
        *("--source-column", "url", "--label-column", "label", "--positive", "yes", "--negative", "no"),
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[3].split() == ["gt", "2", "1", "1"]
    assert lines[4].split() == ["pool", "3"]
    assert lines[5].split() == ["test", "1"]
    assert ["missing-file", "1"] in [line.split() for line in lines]
    assert "7 image(s) fetched and checked, 0 already present" in result.output


def test_json_output(workdir: Workdir, data: Path) -> None:
    result = _run(workdir, "--test", str(data / "test.tsv"), "--source-column", "url", "--json")
    assert result.exit_code == 0, result.output
    assert '"test": 1' in result.output


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith("iris: error: ")
    return str(result.output)


def test_missing_column_is_one_line(workdir: Workdir, data: Path) -> None:
    output = _one_line_error(_run(workdir, "--ground-truth", str(data / "gt.tsv")))
    assert f"{data / 'gt.tsv'}:1: missing column(s) downloadUrl, is_conifer; found 'url', 'label'" in output


def test_bad_label_is_one_line_with_file_and_line(workdir: Workdir, data: Path) -> None:
    output = _one_line_error(
        _run(
            workdir,
            "--ground-truth",
            str(data / "gt.tsv"),
            "--source-column",
            "url",
            "--label-column",
            "label",
        )
    )
    assert f"{data / 'gt.tsv'}:2: label 'yes' in column label is neither 'TRUE'" in output


def test_conflicting_labels_is_one_line(workdir: Workdir, data: Path) -> None:
    (data / "gt.tsv").write_text("downloadUrl\tis_conifer\n0.png\tTRUE\n0.png\tFALSE\n")
    output = _one_line_error(_run(workdir, "--ground-truth", str(data / "gt.tsv")))
    assert "gt.tsv:3: conflicting labels for 0.png" in output


def test_unreadable_and_missing_manifests_are_one_line(workdir: Workdir, data: Path) -> None:
    (data / "bad.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    assert "unreadable XLSX workbook" in _one_line_error(_run(workdir, "--test", str(data / "bad.xlsx")))
    assert "manifest not found" in _one_line_error(_run(workdir, "--pool", str(data / "none.tsv")))


def test_settings_from_iris_toml_are_used(workdir: Workdir, data: Path) -> None:
    config = workdir.config.read_text().replace('source_column = "downloadUrl"', 'source_column = "url"')
    workdir.config.write_text(config)
    result = _run(workdir, "--test", str(data / "test.tsv"))
    assert result.exit_code == 0, result.output


def test_one_class_ground_truth_is_one_line(workdir: Workdir, data: Path) -> None:
    (data / "gt.tsv").write_text("downloadUrl\tis_conifer\n0.png\tTRUE\n1.png\tTRUE\n")
    output = _one_line_error(_run(workdir, "--ground-truth", str(data / "gt.tsv")))
    assert output == (
        f"iris: error: {data / 'gt.tsv'}: ground truth has 2 positive (TRUE) and 0 negative (FALSE) image(s) "
        "in column is_conifer; expected at least 1 of each class (ingest.min_per_class)\n"
    )


def test_full_disk_is_one_line_and_a_rerun_resumes(
    workdir: Workdir, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import polars as pl

    real_write = pl.DataFrame.write_parquet

    def full(self: pl.DataFrame, path: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    result = _run(workdir, "--pool", str(data / "pool.txt"))
    output = _one_line_error(result)
    assert output == (
        f"iris: error: {workdir.table('images')}: disk full (No space left on device); ingest stopped, "
        "the images already stored are kept: make room and run it again to resume\n"
    )
    assert "Traceback" not in output
    monkeypatch.setattr(pl.DataFrame, "write_parquet", real_write)
    again = _run(workdir, "--pool", str(data / "pool.txt"))
    assert again.exit_code == 0, again.output
    # 2.png and 3.png were stored before the disk filled; only missing.png is tried again.
    assert "1 image(s) fetched and checked, 2 already present" in again.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--concurrency", "0"), {}, "ingest.concurrency = 0 (from --concurrency): expected an integer >= 1"),
        (
            ("--concurrency", "-3"),
            {},
            "ingest.concurrency = -3 (from --concurrency): expected an integer >= 1",
        ),
        (
            (),
            {"IRIS_INGEST_TIMEOUT_S": "-1"},
            "ingest.timeout_s = -1.0 (from IRIS_INGEST_TIMEOUT_S): expected a number > 0",
        ),
        ((), {"IRIS_INGEST_TIMEOUT_S": "0"}, "ingest.timeout_s = 0.0 (from IRIS_INGEST_TIMEOUT_S)"),
    ],
)
def test_impossible_download_settings_are_refused_up_front(
    workdir: Workdir, tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/a.png\n")
    result = CliRunner().invoke(
        main, ["-w", str(workdir.root), "ingest", "--pool", str(urls), *args], env=env
    )
    assert message in _one_line_error(result)
    assert not workdir.table("rejects").exists(), "refused before any URL was tried"


def test_the_only_is_column_is_used_and_said(workdir: Workdir, data: Path) -> None:
    (data / "gt.tsv").write_text("downloadUrl\tis_shirt\n0.png\tTRUE\n1.png\tFALSE\n")
    result = _run(workdir, "--ground-truth", str(data / "gt.tsv"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"{data / 'gt.tsv'}: no label column is_conifer; using is_shirt, its only is_* column "
        "(--label-column names another)"
    )
    as_json = _run(workdir, "--ground-truth", str(data / "gt.tsv"), "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.output)["notes"] == [result.output.splitlines()[0]]


def test_run_takes_the_column_flags_of_ingest(workdir: Workdir, data: Path) -> None:
    refused = CliRunner().invoke(main, ["-w", str(workdir.root), "run", "--positive", " "])
    assert (
        _one_line_error(refused)
        == 'iris: error: task.positive = " " (from --positive): expected non-empty text\n'
    )
    result = CliRunner().invoke(
        main,
        [
            *("-w", str(workdir.root), "run", "--until", "ingest", "--ground-truth", str(data / "gt.tsv")),
            *("--source-column", "url", "--label-column", "label", "--positive", "yes", "--negative", "no"),
        ],
    )
    assert result.exit_code == 0, result.output
    images = tables.read(workdir.table("images"), tables.IMAGES)
    assert images.select("source", "label").rows() == [("0.png", 1), ("1.png", 0)]


def test_run_refuses_impossible_download_settings_before_ingest(workdir: Workdir, data: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["-w", str(workdir.root), "run", "--ground-truth", str(data / "gt.tsv")],
        env={"IRIS_INGEST_CONCURRENCY": "0"},
    )
    assert _one_line_error(result) == (
        "iris: error: ingest.concurrency = 0 (from IRIS_INGEST_CONCURRENCY): expected an integer >= 1\n"
    )
    assert not workdir.table("images").exists()
