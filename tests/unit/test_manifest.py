"""Manifests: the contest's files as they are, other files by naming columns, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iris.data.ids import clean_source, image_id
from iris.data.manifest import read_manifest
from iris.errors import ColumnError, InputError

CONTEST_GT = (
    "downloadUrl\tis_conifer\n"
    "https://example.org/a.jpg\tTRUE\n"
    "https://example.org/b.jpg\tFALSE\n"
    "\n"
    "https://example.org/c.jpg\ttrue \n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_contest_ground_truth_tsv(tmp_path: Path) -> None:
    manifest = read_manifest(
        _write(tmp_path / "hw_3_markup_data.txt", CONTEST_GT),
        source_column="downloadUrl",
        label_column="is_conifer",
    )
    assert manifest.format == "tsv"
    assert manifest.columns == ("downloadUrl", "is_conifer")
    assert [(r.line, r.source, r.label) for r in manifest.rows] == [
        (2, "https://example.org/a.jpg", 1),
        (3, "https://example.org/b.jpg", 0),
        (5, "https://example.org/c.jpg", 1),
    ]
    record = manifest.record()
    assert record["format"] == "tsv" and record["delimiter"] == "\t" and record["rows"] == 3


def test_headerless_url_list(tmp_path: Path) -> None:
    path = _write(tmp_path / "pool.txt", "https://e.org/1.jpg\nhttps://e.org/2.jpg?a=1,b=2\r\n\n")
    manifest = read_manifest(path, source_column="downloadUrl")
    assert (manifest.format, manifest.header, manifest.columns) == ("list", False, ())
    assert [(r.line, r.source) for r in manifest.rows] == [
        (1, "https://e.org/1.jpg"),
        (2, "https://e.org/2.jpg?a=1,b=2"),
    ]


def test_single_column_with_header(tmp_path: Path) -> None:
    manifest = read_manifest(
        _write(tmp_path / "p.txt", "downloadUrl\nx/1.png\n"), source_column="downloadUrl"
    )
    assert (manifest.format, manifest.header, manifest.columns) == ("list", True, ("downloadUrl",))
    assert [r.source for r in manifest.rows] == ["x/1.png"]


def test_csv_with_named_columns_and_values(tmp_path: Path) -> None:
    path = _write(tmp_path / "gt.csv", 'file,kind\n"imgs/a,1.png",Cat\nimgs/b.png,dog\n')
    manifest = read_manifest(path, source_column="file", label_column="kind", positive="cat", negative="DOG")
    assert manifest.format == "csv"
    assert [(r.source, r.label) for r in manifest.rows] == [("imgs/a,1.png", 1), ("imgs/b.png", 0)]


def test_test_xlsx_with_trailing_service_characters(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["downloadUrl "])
    sheet.append(["https://e.org/1.jpg_x000D_"])
    sheet.append(["https://e.org/2.jpg \t"])
    sheet.append(["https://e.org/3.jpg\r\n"])
    sheet.append([None])
    sheet.append(["https://e.org/4.jpg\u200b"])
    path = tmp_path / "test.xlsx"
    book.save(path)
    manifest = read_manifest(path, source_column="downloadUrl")
    assert manifest.format == "xlsx"
    assert [(r.line, r.source) for r in manifest.rows] == [
        (2, "https://e.org/1.jpg"),
        (3, "https://e.org/2.jpg"),
        (4, "https://e.org/3.jpg"),
        (6, "https://e.org/4.jpg"),
    ]
    assert manifest.rows[0].raw == "https://e.org/1.jpg_x000D_"


def test_xlsx_boolean_labels(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["downloadUrl", "is_conifer"])
    book.active.append(["a.png", True])
    book.active.append(["b.png", False])
    book.save(tmp_path / "gt.xlsx")
    manifest = read_manifest(tmp_path / "gt.xlsx", source_column="downloadUrl", label_column="is_conifer")
    assert [r.label for r in manifest.rows] == [1, 0]


def test_missing_column_names_file_and_columns_found(tmp_path: Path) -> None:
    path = _write(tmp_path / "gt.tsv", "url\tis_conifer\na.png\tTRUE\n")
    with pytest.raises(ColumnError) as caught:
        read_manifest(path, source_column="downloadUrl", label_column="is_conifer")
    message = str(caught.value)
    assert f"{path}:1" in message
    assert "missing column(s) downloadUrl" in message
    assert "found 'url', 'is_conifer'" in message


def test_missing_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "gt.tsv", "downloadUrl\na.png\n")
    with pytest.raises(ColumnError, match=r"missing column\(s\) is_conifer; found 'downloadUrl'"):
        read_manifest(path, source_column="downloadUrl", label_column="is_conifer")


def test_headerless_list_is_not_accepted_as_ground_truth(tmp_path: Path) -> None:
    path = _write(tmp_path / "gt.txt", "https://e.org/1.jpg\n")
    with pytest.raises(ColumnError, match="missing column"):
        read_manifest(path, source_column="downloadUrl", label_column="is_conifer")


@pytest.mark.parametrize("cell", ["maybe", "", "1"])
def test_bad_label_cell_names_file_and_line(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path / "gt.tsv", f"downloadUrl\tis_conifer\na.png\tTRUE\nb.png\t{cell}\n")
    with pytest.raises(InputError) as caught:
        read_manifest(path, source_column="downloadUrl", label_column="is_conifer")
    assert str(caught.value).startswith(f"{path}:3: label {cell!r} in column is_conifer is neither 'TRUE'")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty manifest"),
        (b"\n \n", "empty manifest"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
        (b"downloadUrl\n\xff\xfe caf\xe9\n", "not UTF-8 text"),
        (b"PK\x03\x04garbage", "unreadable XLSX workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy .xls workbook"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m.tsv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_manifest(path, source_column="downloadUrl")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.tsv", source_column="downloadUrl")


def test_clean_source() -> None:
    assert clean_source("  https://e.org/a.jpg_x000D__x000A_\t") == "https://e.org/a.jpg"
    assert clean_source("a\x00b.png\x1f") == "ab.png"
    # Escapes of visible characters are data, not service characters.
    assert clean_source("img_x0041_.png") == "img_x0041_.png"


def test_image_id_is_stable_63_bit_and_ignores_service_characters() -> None:
    source = "https://example.org/a.jpg"
    assert image_id(source) == 4037009029783339703
    assert 0 <= image_id(source) < 2**63
    assert image_id(source + "_x000D_ ") == image_id(source)
    assert image_id("https://example.org/b.jpg") != image_id(source)


@given(st.text(max_size=40))
def test_clean_source_is_idempotent_and_ids_are_63_bit(text: str) -> None:
    cleaned = clean_source(text)
    assert clean_source(cleaned) == cleaned
    assert cleaned == cleaned.strip()
    assert 0 <= image_id(text) < 2**63
    assert image_id(text) == image_id(cleaned)


def test_url_list_opening_with_a_comment_keeps_its_first_url(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "unlabeled.txt",
        "# exported 2026-12-01, one URL per line\nhttps://e.org/1.jpg\n  # a note\nhttps://e.org/2.jpg\n",
    )
    manifest = read_manifest(path, source_column="downloadUrl")
    assert (manifest.format, manifest.header, manifest.columns) == ("list", False, ())
    assert [(r.line, r.source) for r in manifest.rows] == [
        (2, "https://e.org/1.jpg"),
        (4, "https://e.org/2.jpg"),
    ]
    assert manifest.notes == (f"{path}: skipped 2 comment line(s) starting with # (line 1, 3)",)


def test_comments_in_a_tsv_are_skipped_and_lines_still_count(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "gt.tsv",
        '# labels by hand, "draft"\ndownloadUrl\tis_conifer\na.png\tTRUE\n# b.png\tFALSE\nc.png\tFALSE\n',
    )
    manifest = read_manifest(path, source_column="downloadUrl", label_column="is_conifer")
    assert manifest.columns == ("downloadUrl", "is_conifer")
    assert [(r.line, r.source, r.label) for r in manifest.rows] == [(3, "a.png", 1), (5, "c.png", 0)]
    assert manifest.notes == (f"{path}: skipped 2 comment line(s) starting with # (line 1, 4)",)


def test_comment_rows_in_an_xlsx_are_skipped(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    for row in (["# from the field team"], ["downloadUrl"], ["a.png"], ["#draft"], ["b.png"]):
        book.active.append(row)
    book.save(tmp_path / "t.xlsx")
    manifest = read_manifest(tmp_path / "t.xlsx", source_column="downloadUrl")
    assert [(r.line, r.source) for r in manifest.rows] == [(3, "a.png"), (5, "b.png")]
    assert manifest.notes == (
        f"{tmp_path / 't.xlsx'}: skipped 2 comment line(s) starting with # (line 1, 4)",
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig", "utf-32"])
def test_unicode_text_is_decoded_by_its_byte_order_mark(tmp_path: Path, encoding: str) -> None:
    text = "downloadUrl\tis_conifer\r\nhttps://e.org/ель.jpg\tTRUE\r\nhttps://e.org/b.jpg\tFALSE\r\n"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    path = tmp_path / "gt.txt"
    path.write_bytes(bom + text.encode(encoding))  # Excel's "Unicode text" is UTF-16 LE with a mark
    manifest = read_manifest(path, source_column="downloadUrl", label_column="is_conifer")
    assert (manifest.format, manifest.columns) == ("tsv", ("downloadUrl", "is_conifer"))
    assert [(r.line, r.source, r.label) for r in manifest.rows] == [
        (2, "https://e.org/ель.jpg", 1),
        (3, "https://e.org/b.jpg", 0),
    ]


def test_utf16_without_a_mark_is_still_refused_as_binary(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_bytes("downloadUrl\n".encode("utf-16-le"))
    with pytest.raises(InputError) as caught:
        read_manifest(path, source_column="downloadUrl")
    assert str(caught.value) == (
        f"{path}: binary file, expected a TSV/CSV/TXT manifest (UTF-8, or UTF-16 with a byte-order mark) "
        "or an XLSX workbook"
    )


def test_label_column_detected_only_when_asked_and_unambiguous(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.tsv", "downloadUrl\tis_shirt\na.png\tTRUE\n")
    manifest = read_manifest(one, source_column="downloadUrl", label_column="is_conifer", detect_label=True)
    assert (manifest.label_column, manifest.rows[0].label) == ("is_shirt", 1)
    assert manifest.notes == (
        f"{one}: no label column is_conifer; using is_shirt, its only is_* column "
        "(--label-column names another)",
    )
    with pytest.raises(ColumnError, match="missing column"):
        read_manifest(one, source_column="downloadUrl", label_column="is_conifer")
    two = _write(tmp_path / "two.tsv", "downloadUrl\tis_shirt\tis_red\na.png\tTRUE\tFALSE\n")
    with pytest.raises(ColumnError) as caught:
        read_manifest(two, source_column="downloadUrl", label_column="is_conifer", detect_label=True)
    assert str(caught.value).startswith(
        f"{two}:1: missing column(s) is_conifer; found 'downloadUrl', 'is_shirt'"
    )


def test_a_fifo_or_device_is_refused_as_a_manifest(tmp_path: Path) -> None:
    fifo = tmp_path / "pool.txt"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(InputError) as caught:
            read_manifest(path, source_column="downloadUrl")
        assert str(caught.value) == (
            f"{path}: not a regular file (a FIFO, socket or device); expected a manifest file"
        )
    with pytest.raises(InputError) as caught:
        read_manifest(tmp_path, source_column="downloadUrl")
    assert str(caught.value) == f"{tmp_path}: cannot read manifest (Is a directory)"
