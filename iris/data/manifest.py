"""Reading manifests: TSV, CSV, headerless URL lists and XLSX workbooks.

A manifest names one image per row by URL or path, and (for the ground truth) its
label. The contest's files are read as they are: ``hw_3_markup_data.txt`` (tab-separated,
``downloadUrl`` and ``is_conifer`` TRUE/FALSE), an unlabeled URL list that may have no
header, and a test XLSX whose cells may end in whitespace or control characters.

Whole-file problems raise: :class:`~iris.errors.ColumnError` for a missing column,
:class:`~iris.errors.InputError` for an unreadable file or a label cell that is neither
the positive nor the negative value (with ``file:line``). Row-level problems (an empty
source cell) are left for ingestion to reject.

Text files are decoded by their byte-order mark: UTF-8 (with or without one), UTF-16 LE
or BE (Excel's "Unicode text"), UTF-32. Lines starting with ``#`` are comments, skipped
wherever they are (a URL list that opens with one keeps its first URL as a row, not as a
header); line numbers still count them.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from iris.data.ids import clean_source
from iris.errors import ColumnError, InputError

Format = Literal["tsv", "csv", "xlsx", "list"]
"""``list`` is a text file of one source per line (with or without a header)."""

_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
# UTF-32 first: its little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)


@dataclass(frozen=True)
class ManifestRow:
    """One data row of a manifest."""

    line: int
    """1-based line (text) or row (XLSX) number; the header is line 1."""
    raw: str
    """The source cell as written."""
    source: str
    """The source cell cleaned by :func:`iris.data.ids.clean_source`; may be empty."""
    label: int | None
    """1 positive, 0 negative, ``None`` when the manifest has no label column."""


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest file."""

    path: Path
    format: Format
    columns: tuple[str, ...]
    """Header cells as found (empty without a header)."""
    source_column: str
    label_column: str | None
    rows: tuple[ManifestRow, ...]
    header: bool = True
    """Whether the first row is a header (a list of sources may have none)."""
    positive: str = "TRUE"
    """Label cell value of the positive class."""
    negative: str = "FALSE"
    """Label cell value of the negative class."""
    notes: tuple[str, ...] = ()
    """What reading chose on its own, one line each (a label column found by its prefix)."""

    def record(self) -> dict[str, Any]:
        """What ``tables/ingest.json`` keeps about this file."""
        return {
            "path": str(self.path),
            "format": self.format,
            "header": self.header,
            "delimiter": {"tsv": "\t", "csv": ",", "list": None, "xlsx": None}[self.format],
            "columns": list(self.columns),
            "source_column": self.source_column,
            "label_column": self.label_column,
            "positive": self.positive,
            "negative": self.negative,
            "rows": len(self.rows),
        }


def parse_label(cell: str, *, positive: str, negative: str, where: str, column: str) -> int:
    """Turn a label cell into 1 or 0 (stripped, case-insensitive); anything else raises."""
    value = clean_source(cell).casefold()
    if value == positive.strip().casefold():
        return 1
    if value == negative.strip().casefold():
        return 0
    raise InputError(
        f"{where}: label {cell!r} in column {column} is neither {positive!r} (positive) "
        f"nor {negative!r} (negative); set --positive/--negative"
    )


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _read_xlsx(path: Path) -> list[tuple[int, list[str]]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable XLSX workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        return [
            (number, [_cell_text(v) for v in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
    finally:
        book.close()


def _looks_like_location(cell: str) -> bool:
    text = clean_source(cell).lower()
    return "://" in text or "/" in text or "\\" in text or text.endswith(_IMAGE_SUFFIXES)


def _decode(path: Path, data: bytes) -> str:
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None and b"\x00" in data[:8192]:
        raise InputError(
            f"{path}: binary file, expected a TSV/CSV/TXT manifest (UTF-8, or UTF-16 with a byte-order "
            "mark) or an XLSX workbook"
        )
    try:
        return data.decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding or 'UTF-8'} text (bad byte at offset {exc.start})") from None


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _read_text(
    path: Path, data: bytes
) -> tuple[Literal["tsv", "csv"] | None, list[tuple[int, list[str]]], list[int]]:
    """The delimiter (None for one source per line), the rows, and the comment lines skipped."""
    # A comment becomes a blank line (before the CSV reader sees a stray quote in it): skipped
    # like one, and the line numbers stay true.
    parts = _LINE_BREAK.split(_decode(path, data))
    comments = [i // 2 + 1 for i in range(0, len(parts), 2) if _is_comment(parts[i])]
    text = "".join("" if i % 2 == 0 and _is_comment(part) else part for i, part in enumerate(parts))
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter: Literal["tsv", "csv"] | None
    if "\t" in first:
        delimiter = "tsv"
    elif path.suffix.lower() == ".csv" or ("," in first and not _looks_like_location(first)):
        delimiter = "csv"
    else:
        delimiter = None
    if delimiter is None:
        # One column: every line is one cell, commas and all.
        return None, [(number, [line]) for number, line in enumerate(text.splitlines(), start=1)], comments
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if delimiter == "tsv" else ",")
    try:
        rows = []
        start = 1
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed {delimiter.upper()} ({exc})") from None
    return delimiter, rows, comments


def _find(header: list[str], name: str) -> int | None:
    cleaned = [clean_source(h) for h in header]
    if name in cleaned:
        return cleaned.index(name)
    folded = [h.casefold() for h in cleaned]
    return folded.index(name.casefold()) if name.casefold() in folded else None


def _nonblocking(name: str, flags: int) -> int:
    return os.open(name, flags | getattr(os, "O_NONBLOCK", 0))


def _read_regular(path: Path) -> bytes:
    """A manifest's bytes; a FIFO or a device (``/dev/zero``) is refused before a byte is read."""
    with open(path, "rb", opener=_nonblocking) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(
                f"{path}: not a regular file (a FIFO, socket or device); expected a manifest file"
            )
        return handle.read()


def _only_flag_column(header: list[str]) -> int | None:
    """Index of the header's one ``is_*`` column (``is_shirt``), or None for none or several."""
    found = [i for i, h in enumerate(header) if clean_source(h).casefold().startswith("is_")]
    return found[0] if len(found) == 1 else None


def read_manifest(
    path: Path,
    *,
    source_column: str,
    label_column: str | None = None,
    positive: str = "TRUE",
    negative: str = "FALSE",
    detect_label: bool = False,
) -> Manifest:
    """Read a manifest file.

    Args:
        path: a TSV, CSV, TXT (tab- or comma-separated, or one source per line) or XLSX file;
            the format is detected from the content, not only the suffix.
        source_column: header of the column naming the image.
        label_column: header of the label column; ``None`` for unlabeled manifests, which
            may then also be headerless lists of one source per line.
        positive: label cell value of the positive class.
        negative: label cell value of the negative class.
        detect_label: when ``label_column`` is absent, use the header's only ``is_*``
            column instead (noted in :attr:`Manifest.notes`).

    Raises:
        InputError: the file is missing, unreadable or empty, or a label cell is invalid.
        ColumnError: a required column is missing (the message lists those found).
    """
    try:
        data = _read_regular(path)
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest ({exc.strerror})") from None
    fmt: Format
    comments: list[int] = []
    if data.startswith(_XLSX_MAGIC):
        fmt, rows = "xlsx", _read_xlsx(path)
        comments = [number for number, cells in rows if cells and _is_comment(clean_source(cells[0]))]
    elif data.startswith(_XLS_MAGIC):
        raise InputError(f"{path}: legacy .xls workbook; save it as .xlsx, .csv or .tsv")
    else:
        delimiter, rows, comments = _read_text(path, data)
        fmt = delimiter or "list"
    skipped = set(comments)
    rows = [
        (number, cells)
        for number, cells in rows
        if number not in skipped and any(clean_source(c) for c in cells)
    ]
    if not rows:
        raise InputError(f"{path}: empty manifest, expected a header and at least one row")
    notes: list[str] = []
    if comments:
        # Said, not silent: a source that really starts with "#" would be lost here.
        shown = ", ".join(str(n) for n in comments[:5]) + (", ..." if len(comments) > 5 else "")
        notes.append(f"{path}: skipped {len(comments)} comment line(s) starting with # (line {shown})")
    header_line, header = rows[0]
    source_index = _find(header, source_column)
    label_index = _find(header, label_column) if label_column else None
    if label_column and label_index is None and detect_label:
        label_index = _only_flag_column(header)
        if label_index is not None:
            found = clean_source(header[label_index])
            notes.append(
                f"{path}: no label column {label_column}; using {found}, its only is_* column "
                "(--label-column names another)"
            )
            label_column = found
    headerless = (
        source_index is None and label_column is None and len(header) == 1 and _looks_like_location(header[0])
    )
    if headerless:
        source_index, body = 0, rows
        columns: tuple[str, ...] = ()
    else:
        columns = tuple(clean_source(h) for h in header)
        body = rows[1:]
        wanted = [source_column] + ([label_column] if label_column else [])
        missing = [
            name for name, index in zip(wanted, [source_index, label_index], strict=False) if index is None
        ]
        if missing:
            raise ColumnError(
                f"{path}:{header_line}: missing column(s) {', '.join(missing)}; "
                f"found {', '.join(repr(c) for c in columns) or 'none'} "
                f"(name them with --source-column/--label-column)"
            )
    assert source_index is not None
    parsed = []
    for number, cells in body:
        raw = cells[source_index] if source_index < len(cells) else ""
        label = None
        if label_column is not None and label_index is not None:
            cell = cells[label_index] if label_index < len(cells) else ""
            label = parse_label(
                cell, positive=positive, negative=negative, where=f"{path}:{number}", column=label_column
            )
        parsed.append(ManifestRow(line=number, raw=raw, source=clean_source(raw), label=label))
    return Manifest(
        path=path,
        format=fmt,
        columns=columns,
        source_column=source_column,
        label_column=label_column if label_index is not None else None,
        rows=tuple(parsed),
        header=not headerless,
        positive=positive,
        negative=negative,
        notes=tuple(notes),
    )
