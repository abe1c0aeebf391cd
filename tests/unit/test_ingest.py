"""Ingest of local files: formats, paths, duplicates, whole-file errors, re-runs."""

from __future__ import annotations

import errno
import json
import os
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
from iris.errors import ColumnError, InputError, StageOrderError, WorkdirError
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


def _gt(tmp_path: Path, labels: list[str], *, column: str = "is_conifer", missing: int = 0) -> Path:
    """A ground truth of one image per label; the last ``missing`` files are not written."""
    rows = []
    for n, label in enumerate(labels):
        if n < len(labels) - missing:
            _image(tmp_path / f"g{n}.png", seed=200 + n)
        rows.append(f"g{n}.png\t{label}")
    path = tmp_path / "gt.tsv"
    path.write_text(f"downloadUrl\t{column}\n" + "\n".join(rows) + "\n")
    return path


def test_one_class_ground_truth_is_refused_before_any_fetch(workdir: Workdir, tmp_path: Path) -> None:
    gt = _gt(tmp_path, ["TRUE"] * 6)
    with pytest.raises(InputError) as caught:
        ingest(workdir, workdir.settings(), ground_truth=gt, pool=[], test=None)
    assert str(caught.value) == (
        f"{gt}: ground truth has 6 positive (TRUE) and 0 negative (FALSE) image(s) in column is_conifer; "
        "expected at least 1 of each class (ingest.min_per_class)"
    )
    assert not any(workdir.images.iterdir()), "nothing was fetched"


def test_fewer_than_min_per_class_is_refused(workdir: Workdir, tmp_path: Path) -> None:
    gt = _gt(tmp_path, ["TRUE"] * 7 + ["FALSE"] * 4)
    settings = workdir.settings(ingest={"min_per_class": 5})
    with pytest.raises(InputError) as caught:
        ingest(workdir, settings, ground_truth=gt, pool=[], test=None)
    assert str(caught.value) == (
        f"{gt}: ground truth has 7 positive (TRUE) and 4 negative (FALSE) image(s) in column is_conifer; "
        "expected at least 5 of each class (ingest.min_per_class)"
    )


def test_min_per_class_counts_what_is_left_after_rejects(workdir: Workdir, tmp_path: Path) -> None:
    gt = _gt(tmp_path, ["TRUE"] * 5 + ["FALSE"] * 5, missing=2)
    settings = workdir.settings(ingest={"min_per_class": 5})
    with pytest.raises(InputError) as caught:
        ingest(workdir, settings, ground_truth=gt, pool=[], test=None)
    assert str(caught.value) == (
        f"{gt}: ground truth has 5 positive (TRUE) and 3 negative (FALSE) image(s) in column is_conifer "
        "after rejecting 2 row(s) (2 missing-file); expected at least 5 of each class (ingest.min_per_class)"
    )
    # The 8 images read stay: a re-run that accepts 3 per class reads only the 2 missing again.
    report = ingest(
        workdir, workdir.settings(ingest={"min_per_class": 3}), ground_truth=gt, pool=[], test=None
    )
    assert (report.processed, report.reused, report.rejects) == (2, 8, {"missing-file": 2})


def test_the_default_min_per_class_is_five() -> None:
    from iris.config import IngestSettings

    assert IngestSettings().min_per_class == 5


def test_odd_files_are_rejected_rows_and_ingest_goes_on(workdir: Workdir, tmp_path: Path) -> None:
    from test_validate import DDS

    _image(tmp_path / "ok.png", seed=1)
    (tmp_path / "texture.dds").write_bytes(DDS)
    whole = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    os.mkfifo(tmp_path / "pipe.png")
    _image(tmp_path / "big.png", seed=2, size=(200, 200))
    pool = tmp_path / "pool.txt"
    pool.write_text("ok.png\ntexture.dds\ncut.png\npipe.png\n/dev/zero\nbig.png\n")
    settings = workdir.settings(ingest={"max_bytes": 10_000})
    report = ingest(workdir, settings, ground_truth=None, pool=[pool], test=None)
    assert report.counts["pool"] == 1
    rejects = tables.read(workdir.table("rejects"), tables.REJECTS).sort("line")
    assert rejects.select("line", "reason").rows() == [
        (2, "corrupt"),
        (3, "truncated"),
        (4, "not-a-file"),
        (5, "not-a-file"),
        (6, "file-too-large"),
    ]
    assert rejects["detail"].to_list()[0] == "NotImplementedError: Unknown pixel format flags 0"
    size = (tmp_path / "big.png").stat().st_size
    assert (
        rejects["detail"].to_list()[-1] == f"{tmp_path / 'big.png'}: {size} bytes > ingest.max_bytes = 10000"
    )


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_full_disk_while_saving_images_stops_in_one_line_and_resumes(
    workdir: Workdir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    sources = [f"{n}.png" for n in range(10)]
    for n, source in enumerate(sources):
        _image(tmp_path / source, seed=300 + n)
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(sources) + "\n")
    real_save = Image.Image.save
    saved: list[str] = []

    def save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        if len(saved) == 4:
            raise OSError(code, os.strerror(code))
        saved.append(str(fp))
        real_save(self, fp, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(WorkdirError) as caught:
        ingest(workdir, workdir.settings(), ground_truth=None, pool=[pool], test=None)
    assert str(caught.value) == (
        f"{workdir.images / f'{image_id(sources[4])}.png'}: disk full ({os.strerror(code)}); ingest stopped, "
        "the images already stored are kept: make room and run it again to resume"
    )
    monkeypatch.setattr(Image.Image, "save", real_save)
    again = ingest(workdir, workdir.settings(), ground_truth=None, pool=[pool], test=None)
    assert (again.processed, again.reused, again.counts["pool"]) == (6, 4, 10)


def test_full_disk_while_writing_a_table_names_it(
    workdir: Workdir, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = pl.DataFrame.write_parquet

    def to_full_device(self: pl.DataFrame, _path: object, **kwargs: object) -> None:
        real_write(self, "/dev/full", **kwargs)  # type: ignore[arg-type]  # the kernel's always-full disk

    monkeypatch.setattr(pl.DataFrame, "write_parquet", to_full_device)
    with pytest.raises(WorkdirError) as caught:
        _ingest(workdir, files)
    assert str(caught.value) == (
        f"{workdir.table('images')}: disk full (No space left on device); ingest stopped, "
        "the images already stored are kept: make room and run it again to resume"
    )
    monkeypatch.setattr(pl.DataFrame, "write_parquet", real_write)
    again = _ingest(workdir, files)
    assert (again.processed, again.reused) == (0, 10)


def test_only_is_column_is_the_label_column_when_the_default_is_absent(
    workdir: Workdir, tmp_path: Path
) -> None:
    gt = _gt(tmp_path, ["TRUE", "FALSE", "TRUE"], column="is_shirt")
    lines: list[str] = []
    report = ingest(workdir, workdir.settings(), ground_truth=gt, pool=[], test=None, echo=lines.append)
    note = (
        f"{gt}: no label column is_conifer; using is_shirt, its only is_* column "
        "(--label-column names another)"
    )
    assert lines == report.notes == [note]
    assert report.labels == {"positive": 2, "negative": 1}
    record = load_ingest_record(workdir)
    assert record["task"]["label_column"] == record["splits"]["gt"][0]["label_column"] == "is_shirt"


def test_a_named_label_column_is_not_guessed(workdir: Workdir, tmp_path: Path) -> None:
    gt = _gt(tmp_path, ["TRUE", "FALSE"], column="is_shirt")
    with pytest.raises(ColumnError, match="missing column"):
        ingest(
            workdir, workdir.settings(task={"label_column": "is_tree"}), ground_truth=gt, pool=[], test=None
        )
