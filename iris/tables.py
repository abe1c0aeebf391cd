"""Table contracts: every stage's output, its columns and their types, named once.

A stage checks its inputs with :func:`check` at its door and writes its outputs with
:func:`write` (atomic: a crash never leaves half a parquet file behind).

Labels are integers everywhere: 1 is the positive class, 0 the negative one; the class
names live in ``[task]`` settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from iris.errors import ColumnError, StageOrderError

Schema = dict[str, pl.DataType | type[pl.DataType]]

IMAGES: Schema = {
    "id": pl.Int64,  # stable id, derived from the source string (see iris.data.ids)
    "source": pl.String,  # URL or path as written in the manifest, cleaned
    "path": pl.String,  # local file, relative to the work directory
    "split": pl.String,  # "gt" | "pool" | "test"
    "label": pl.Int8,  # known label (ground truth), null otherwise
    "width": pl.Int32,
    "height": pl.Int32,
    "sha256": pl.String,  # content hash of the decoded RGB pixels
}
REJECTS: Schema = {
    "source": pl.String,
    "split": pl.String,
    "file": pl.String,  # manifest file
    "line": pl.Int64,  # 1-based line (row) in that manifest, header is line 1
    "reason": pl.String,  # short code: http-404, timeout, truncated, not-an-image, duplicate, ...
    "detail": pl.String,
}
PSEUDOLABELS: Schema = {
    "id": pl.Int64,
    "knn_label": pl.Int8,  # ensemble label, null when the ensemble is unsure
    "knn_share": pl.Float64,  # share of members that voted confidently for knn_label
    "cluster": pl.Int32,
    "cluster_label": pl.Int8,
    "auto_label": pl.Int8,  # null unless the image was labeled automatically
    "status": pl.String,  # "auto" | "problematic"
}
SHORTLIST: Schema = {
    "id": pl.Int64,
    "reason": pl.String,  # "problematic" | "neighbour"
    "problematic_neighbours": pl.Int32,
    "priority": pl.Int32,  # 0 = first to send
}
ANSWERS: Schema = {
    "task": pl.Int64,  # image id
    "worker": pl.String,
    "label": pl.Int8,
    "page": pl.String,
    "submitted_at": pl.Datetime("us", "UTC"),
    "duration": pl.Float64,  # seconds the worker spent on the page
    "is_honeypot": pl.Boolean,
}
AGGREGATED: Schema = {
    "task": pl.Int64,
    "label": pl.Int8,
    "confidence": pl.Float64,
    "n_answers": pl.Int32,
}
WORKERS: Schema = {
    "worker": pl.String,
    "skill": pl.Float64,
    "honeypot_accuracy": pl.Float64,
    "banned": pl.Boolean,
    "answers": pl.Int32,
    "seconds": pl.Float64,
}
FINAL_LABELS: Schema = {
    "id": pl.Int64,
    "label": pl.Int8,
    "origin": pl.String,  # "gt" | "crowd" | "auto" | "propagated"
    "confidence": pl.Float64,
}

CONTRACTS: dict[str, Schema] = {
    "images": IMAGES,
    "rejects": REJECTS,
    "pseudolabels": PSEUDOLABELS,
    "shortlist": SHORTLIST,
    "answers": ANSWERS,
    "aggregated": AGGREGATED,
    "workers": WORKERS,
    "final_labels": FINAL_LABELS,
}

PRODUCED_BY = {
    "images": "iris ingest",
    "rejects": "iris ingest",
    "pseudolabels": "iris pseudolabel",
    "shortlist": "iris pseudolabel",
    "answers": "iris crowd collect",
    "aggregated": "iris aggregate",
    "workers": "iris aggregate",
    "final_labels": "iris propagate",
}


def check(frame: pl.DataFrame, schema: Schema, *, where: str) -> pl.DataFrame:
    """Check that ``frame`` has the columns of ``schema`` and cast them to its types.

    Raises:
        ColumnError: naming the missing columns and where the table came from.
    """
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ColumnError(
            f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns) or 'none'}"
        )
    return frame.with_columns(pl.col(name).cast(dtype) for name, dtype in schema.items())


def empty(schema: Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def write(frame: pl.DataFrame, path: Path) -> Path:
    """Write a parquet file atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
    return path


def read(path: Path, schema: Schema | None = None) -> pl.DataFrame:
    """Read a stage table; a missing one names the command that makes it."""
    if not path.exists():
        maker = PRODUCED_BY.get(path.stem, "the stage that writes it")
        raise StageOrderError(f"{path} does not exist yet; run `{maker}` first")
    frame = pl.read_parquet(path)
    return check(frame, schema, where=str(path)) if schema else frame
