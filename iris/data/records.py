"""What ingest leaves behind for later stages: its record (``tables/ingest.json``) and the
manifest rows (``tables/manifest_rows.parquet``). Ingest writes them, predict reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from iris import tables
from iris.errors import StageOrderError
from iris.tables import MANIFEST_ROWS
from iris.workdir import Workdir

RECORD_FILE = "ingest.json"


def record_path(workdir: Workdir) -> Path:
    return workdir.tables / RECORD_FILE


def load_ingest_record(workdir: Workdir) -> dict[str, Any]:
    """The manifests and columns the last ingest used (``tables/ingest.json``).

    Shape::

        {"version": 1, "ingested_at": "...",
         "task": {"source_column", "label_column", "positive", "negative"},
         "splits": {"gt" | "pool" | "test": [
             {"path", "format": "tsv" | "csv" | "xlsx" | "list", "header", "delimiter",
              "columns", "source_column", "label_column", "positive", "negative", "rows"}]}}

    Raises:
        StageOrderError: ingest has not run in this work directory.
    """
    path = record_path(workdir)
    if not path.exists():
        raise StageOrderError(f"{path} does not exist yet; run `iris ingest` first")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


def load_manifest_rows(workdir: Workdir, split: str | None = None) -> pl.DataFrame:
    """Every manifest row with its image id, in manifest order (columns: ``MANIFEST_ROWS``).

    ``iris predict`` uses the test rows to answer each row of the test manifest, in order.
    """
    frame = tables.read(workdir.table("manifest_rows"), MANIFEST_ROWS)
    return frame.filter(pl.col("split") == split) if split else frame
