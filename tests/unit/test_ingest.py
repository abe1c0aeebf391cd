"""Ingest of local files: formats, paths, duplicates, whole-file errors, re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openpyxl
import polars as pl
import pytest
from PIL import Image

from iris import tables
from iris.data.ids import image_id
from iris.data.ingest import ingest
from iris.data.records import load_ingest_record, load_manifest_rows
from iris.errors import ColumnError, InputError, StageOrderError
from iris.workdir import Workdir


@pytest.fixture(autouse=True)
def _small_ground_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """These fixtures label one to three images per class, under ``ingest.min_per_class``'s default."""
    monkeypatch.setenv("IRIS_INGEST_MIN_PER_CLASS", "1")

def _image(path: Path, seed: int, *, mode: str = "RGB", size: tuple[int, int] = (16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def _xlsx(path: Path, cells: list[str]) -> Path:
    book = openpyxl.Workbook()
    book.active.append(["downloadUrl"])
    for cell in cells:
        book.active.append([cell])
    book.save(path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A contest-shaped set: TSV ground truth, headerless pool list, XLSX test, mixed path kinds."""
    data = tmp_path / "data"
    for n in range(10):
        _image(data / "img" / f"{n}.png", seed=n)
    _image(data / "img" / "gray.jpg", seed=20, mode="L")
    (data / "gt.tsv").write_text(
        "downloadUrl\tis_conifer\nimg/0.png\tTRUE\nimg/1.png\tFALSE\nimg/gray.jpg\tFALSE\n", encoding="utf-8"
    )
    (data / "pool.txt").write_text(
        f"img/2.png\n{data / 'img' / '3.png'}\nfile://{data / 'img' / '4.png'}\nimg/5.png\n", encoding="utf-8"
    )
    _xlsx(data / "test.xlsx", ["img/6.png_x000D_", "img/7.png \t", "img/8.png"])
    return {"gt": data / "gt.tsv", "pool": data / "pool.txt", "test": data / "test.xlsx", "data": data}


def _ingest(workdir: Workdir, files: dict[str, Path], **settings: dict[str, object]):  # type: ignore[no-untyped-def]
    return ingest(
        workdir,
        workdir.settings(**settings),
        ground_truth=files["gt"],
        pool=[files["pool"]],
        test=files["test"],
    )


def test_contest_shaped_files(workdir: Workdir, files: dict[str, Path]) -> None:
    report = _ingest(workdir, files)
    assert report.counts == {"gt": 3, "pool": 4, "test": 3}
    assert report.labels == {"positive": 1, "negative": 2}
    assert report.rejects == {}
    images = tables.read(workdir.table("images"), tables.IMAGES)
    assert images["source"].to_list()[-3:] == ["img/6.png", "img/7.png", "img/8.png"]
    assert images["id"].to_list() == [image_id(s) for s in images["source"].to_list()]
    assert images.filter(pl.col("split") == "gt")["label"].to_list() == [1, 0, 0]
    assert images.filter(pl.col("split") != "gt")["label"].null_count() == 7
    gray = images.filter(pl.col("source") == "img/gray.jpg").row(0, named=True)
    assert (gray["width"], gray["height"]) == (16, 12)
    with Image.open(workdir.root / gray["path"]) as saved:
        assert (saved.format, saved.mode) == ("PNG", "RGB")
    assert tables.read(workdir.table("rejects"), tables.REJECTS).height == 0


def test_ingest_record_and_manifest_rows(workdir: Workdir, files: dict[str, Path]) -> None:
    _ingest(workdir, files)
    record = load_ingest_record(workdir)
    gt = record["splits"]["gt"][0]
    assert gt["path"] == str(files["gt"].resolve())
    assert (gt["format"], gt["source_column"], gt["label_column"], gt["positive"], gt["negative"]) == (
        "tsv",
        "downloadUrl",
        "is_conifer",
        "TRUE",
        "FALSE",
    )
    assert record["splits"]["pool"][0]["format"] == "list"
    assert record["splits"]["pool"][0]["header"] is False
    assert record["splits"]["test"][0]["format"] == "xlsx"
    test_rows = load_manifest_rows(workdir, "test")
    assert test_rows["line"].to_list() == [2, 3, 4]
    assert test_rows["raw"].to_list()[0] == "img/6.png_x000D_"
    assert test_rows["id"].to_list() == [image_id(f"img/{n}.png") for n in (6, 7, 8)]


def test_load_record_before_ingest(workdir: Workdir) -> None:
    with pytest.raises(StageOrderError, match="run `iris ingest` first"):
        load_ingest_record(workdir)


def test_bad_rows_are_rejected_not_fatal(workdir: Workdir, tmp_path: Path) -> None:
    data = tmp_path / "d"
    _image(data / "ok.png", seed=1)
    (data / "html.png").write_text("<html><body>nope</body></html>")
    (data / "empty.png").write_bytes(b"")
    _image(data / "tiny.png", seed=2, size=(4, 4))
    pool = data / "pool.csv"
    pool.write_text(
        "downloadUrl,other\nok.png,x\nmissing.png,x\nhtml.png,x\nempty.png,x\n,x\nftp://h/a.png,x\ntiny.png,x\n"
    )
    report = ingest(workdir, workdir.settings(), ground_truth=None, pool=[pool], test=None)
    assert report.counts["pool"] == 1
    rejects = tables.read(workdir.table("rejects"), tables.REJECTS).sort("line")
    assert list(zip(rejects["line"].to_list(), rejects["reason"].to_list(), strict=True)) == [
        (3, "missing-file"),
        (4, "html"),
        (5, "empty"),
        (6, "empty-source"),
        (7, "bad-source"),
        (8, "too-small"),
    ]
    assert set(rejects["split"].to_list()) == {"pool"}


def test_duplicates_between_ground_truth_and_pool(workdir: Workdir, tmp_path: Path) -> None:
    data = tmp_path / "d"
    for n in range(3):
        _image(data / f"{n}.png", seed=n)
    _image(data / "copy-of-0.png", seed=0)
    _image(data / "copy-of-2.png", seed=2)
    gt = data / "gt.tsv"
    gt.write_text("downloadUrl\tis_conifer\n0.png\tTRUE\n1.png\tFALSE\n1.png\tFALSE\n")
    pool = data / "pool.tsv"
    pool.write_text("downloadUrl\n0.png\ncopy-of-0.png\n2.png\ncopy-of-2.png\n2.png\n")
    report = ingest(workdir, workdir.settings(), ground_truth=gt, pool=[pool], test=None)
    assert report.counts == {"gt": 2, "pool": 1, "test": 0}
    images = tables.read(workdir.table("images"), tables.IMAGES)
    assert images.select("source", "split").rows() == [("0.png", "gt"), ("1.png", "gt"), ("2.png", "pool")]
    rejects = tables.read(workdir.table("rejects"), tables.REJECTS).sort("split", "line")
    assert rejects.select("split", "line", "reason").rows() == [
        ("gt", 4, "duplicate"),
        ("pool", 2, "duplicate"),
        ("pool", 3, "duplicate"),
        ("pool", 5, "duplicate"),
        ("pool", 6, "duplicate"),
    ]
    details = dict(zip(rejects["line"].to_list(), rejects["detail"].to_list(), strict=False))
    assert details[3].startswith("same picture as ground truth 0.png")


def test_test_rows_sharing_pixels_are_kept(workdir: Workdir, tmp_path: Path) -> None:
    data = tmp_path / "d"
    _image(data / "a.png", seed=1)
    _image(data / "b.png", seed=1)
    test = data / "test.tsv"
    test.write_text("downloadUrl\na.png\nb.png\na.png\n")
    report = ingest(workdir, workdir.settings(), ground_truth=None, pool=[], test=test)
    assert report.counts["test"] == 2
    assert report.rejects == {}
    assert load_manifest_rows(workdir, "test")["id"].to_list() == [
        image_id("a.png"),
        image_id("b.png"),
    ] * 1 + [image_id("a.png")]


def test_conflicting_labels_for_one_source_stop(workdir: Workdir, tmp_path: Path) -> None:
    gt = tmp_path / "gt.tsv"
    gt.write_text("downloadUrl\tis_conifer\na.png\tTRUE\nb.png\tFALSE\na.png\tFALSE\n")
    with pytest.raises(InputError) as caught:
        ingest(workdir, workdir.settings(), ground_truth=gt, pool=[], test=None)
    assert str(caught.value) == f"{gt}:4: conflicting labels for a.png: FALSE here, TRUE at {gt}:2"


def test_conflicting_labels_for_one_picture_stop(workdir: Workdir, tmp_path: Path) -> None:
    _image(tmp_path / "a.png", seed=5)
    _image(tmp_path / "same-as-a.png", seed=5)
    gt = tmp_path / "gt.tsv"
    gt.write_text("downloadUrl\tis_conifer\na.png\tTRUE\nsame-as-a.png\tFALSE\n")
    with pytest.raises(InputError, match=r"gt.tsv:3: conflicting labels for one image: same-as-a.png"):
        ingest(workdir, workdir.settings(), ground_truth=gt, pool=[], test=None)


def test_missing_column_stops(workdir: Workdir, files: dict[str, Path]) -> None:
    with pytest.raises(ColumnError, match="missing column"):
        _ingest(workdir, files, task={"label_column": "is_shirt"})


def test_nothing_to_ingest(workdir: Workdir) -> None:
    with pytest.raises(InputError, match="nothing to ingest"):
        ingest(workdir, workdir.settings(), ground_truth=None, pool=[], test=None)


def test_rerun_fetches_only_missing_files_and_keeps_other_splits(
    workdir: Workdir, files: dict[str, Path]
) -> None:
    first = _ingest(workdir, files)
    assert (first.processed, first.reused) == (10, 0)
    again = _ingest(workdir, files)
    assert (again.processed, again.reused) == (0, 10)
    (workdir.images / f"{image_id('img/2.png')}.png").unlink()
    # As if a crash cut img/6 short before it was recorded: the file is made again.
    cut = image_id("img/6.png")
    (workdir.images / f"{cut}.png").write_bytes(b"\x89PNG cut short")
    journal_path = workdir.tables / "ingest_journal.jsonl"
    kept = [line for line in journal_path.read_text().splitlines() if json.loads(line)["id"] != cut]
    journal_path.write_text("\n".join(kept) + "\n")
    images = tables.read(workdir.table("images"))
    tables.write(images.filter(pl.col("id") != cut), workdir.table("images"))
    # A re-run naming only the pool keeps the ground truth and test of the last run.
    third = ingest(workdir, workdir.settings(), ground_truth=None, pool=[files["pool"]], test=None)
    assert (third.processed, third.reused) == (2, 8)
    assert third.counts == {"gt": 3, "pool": 4, "test": 3}
    assert tables.read(workdir.table("images"), tables.IMAGES).height == 10
    journal = (workdir.tables / "ingest_journal.jsonl").read_text().splitlines()
    assert len({json.loads(line)["id"] for line in journal}) == len(journal) == 10


def test_process_pool_path(workdir: Workdir, tmp_path: Path) -> None:
    sources = [f"{n}.png" for n in range(40)]
    for n in range(40):
        _image(tmp_path / sources[n], seed=100 + n)
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(sources) + "\n")
    report = ingest(
        workdir, workdir.settings(ingest={"workers": 2}), ground_truth=None, pool=[pool], test=None
    )
    assert report.counts["pool"] == 40
    images = tables.read(workdir.table("images"), tables.IMAGES)
    assert images["sha256"].n_unique() == 40
