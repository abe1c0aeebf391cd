"""Table contracts: every stage's output, its columns and their types, named once.

A stage checks its inputs with :func:`check` at its door and writes its outputs with
:func:`write` (atomic: a crash never leaves half a parquet file behind).

Labels are integers everywhere: 1 is the positive class, 0 the negative one; the class
names live in ``[task]`` settings.

The vocabulary of the columns and payload keys comes with the schemas: :class:`Split`
(which list an image came from), :class:`Status` (where an image stands in the pipeline,
payload and ``pseudolabels`` key ``status``) and :class:`Origin` (who gave a final label,
table column and payload key ``origin``). They are ``str`` enums, so tables and payloads
store plain strings and ``Status.AUTO == "auto"``. They are defined in
:mod:`iris.vocabulary`, which imports nothing heavy, so the settings and the CLI can name
them without loading polars.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from iris.errors import ColumnError, StageOrderError, WorkdirError
from iris.vocabulary import ORIGINS, SPLITS, STATUSES, Origin, Split, Status, initial_status

Schema = dict[str, pl.DataType | type[pl.DataType]]


IMAGES: Schema = {
    "id": pl.Int64,  # stable id, derived from the source string (see iris.data.ids)
    "source": pl.String,  # URL or path as written in the manifest, cleaned
    "path": pl.String,  # local file, relative to the work directory
    "split": pl.String,  # Split
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
    "status": pl.String,  # Status.AUTO | Status.PROBLEMATIC
}
SHORTLIST: Schema = {
    "id": pl.Int64,
    "reason": pl.String,  # Status.PROBLEMATIC | Status.NEIGHBOUR
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
    "origin": pl.String,  # Origin
    "confidence": pl.Float64,
}
FINAL_CONFLICTS: Schema = {
    "id": pl.Int64,
    "kind": pl.String,  # "crowd-vs-gt" | "auto-vs-crowd" | "auto-vs-gt"
    "kept_label": pl.Int8,
    "kept_origin": pl.String,
    "other_label": pl.Int8,
    "other_origin": pl.String,
    "other_confidence": pl.Float64,
}
"""One row per image whose sources disagree: what was kept and what was overruled."""
MANIFEST_ROWS: Schema = {
    "split": pl.String,
    "file": pl.String,  # manifest path
    "line": pl.Int64,  # 1-based, header is line 1
    "raw": pl.String,  # the source cell as written
    "source": pl.String,  # cleaned; "" for an empty cell
    "id": pl.Int64,  # image id; null for an empty cell
    "label": pl.Int8,  # ground-truth label, null elsewhere
}
"""Every manifest row ingest read, before download (``tables/manifest_rows``)."""
GROUND_TRUTH_SPLIT: Schema = {
    "id": pl.Int64,
    "source": pl.String,
    "path": pl.String,
    "label": pl.Int8,
    "role": pl.String,  # "training" | "exam" | "honeypot"
}
"""The ground truth shared out between the crowd's training, exam and honeypots."""
TASKS: Schema = {"id": pl.Int64, "source": pl.String, "path": pl.String, "priority": pl.Int32}
"""The crowd campaign's tasks: the shortlist joined to its images."""
BANS: Schema = {
    "worker": pl.String,
    "rule": pl.String,  # "fast" | "honeypot" | "majority" | "skill"
    "detail": pl.String,
    "at": pl.Datetime("us", "UTC"),
    "until": pl.Datetime("us", "UTC"),
}
"""Quality control's bans: who, by which rule, from when until when."""
TRAINING: Schema = {
    "id": pl.Int64,
    "path": pl.String,  # absolute path of the image file
    "label": pl.Int8,
    "confidence": pl.Float64,
    "origin": pl.String,  # Origin
}
"""One row per training image: the final label joined to its file."""

ROUND_TASKS: Schema = {
    "id": pl.Int64,
    "round": pl.Int32,  # 0-based
    "role": pl.String,  # "pick" (the strategy's) | "audit" (uniform among those left automatic)
    "priority": pl.Int32,  # order within the campaign, 0 = first to send
    "auto_label": pl.Int8,  # the automatic label when the round was drawn (what the audit checks)
    "certainty": pl.Float64,  # its certainty |2p - 1|
}
"""What each crowd round bought (``tables/round_tasks``), written before the round is launched."""
ROUNDS: Schema = {
    "round": pl.Int32,
    "picked": pl.Int32,
    "audited": pl.Int32,
    "bought": pl.Int32,  # images bought by every round so far, audits included
    "share": pl.Float64,  # bought / pool
    "cost": pl.Float64,  # the campaign's cost so far
    "audit_n": pl.Int32,  # audited images with a crowd label
    "audit_agree": pl.Int32,
    "audit_accuracy": pl.Float64,  # estimated accuracy of the automatic labels (null: no estimate)
    "audit_low": pl.Float64,
    "audit_high": pl.Float64,
    "crowd_accuracy": pl.Float64,  # mean confidence of the crowd labels
    "expected_low": pl.Float64,  # expected final-label accuracy, automatic ones at audit_low
    "stop": pl.Boolean,
    "reason": pl.String,  # StopReason, "" while going on
}
"""One row per finished crowd round (``tables/rounds``): the audit and the decision."""
ROUND_LABELS: Schema = {
    "id": pl.Int64,
    "auto_label": pl.Int8,
    "certainty": pl.Float64,
}
"""The rounds labeler's final automatic label of every pool image no round bought."""


def member_votes_schema(names: list[str]) -> dict[str, Any]:
    """``member_votes`` table: ``id`` and one Int8 column per member (null = not confident)."""
    return {"id": pl.Int64, **{name: pl.Int8 for name in names}}


CONTRACTS: dict[str, Schema] = {
    "images": IMAGES,
    "rejects": REJECTS,
    "pseudolabels": PSEUDOLABELS,
    "shortlist": SHORTLIST,
    "answers": ANSWERS,
    "aggregated": AGGREGATED,
    "workers": WORKERS,
    "final_labels": FINAL_LABELS,
    "final_conflicts": FINAL_CONFLICTS,
    "round_tasks": ROUND_TASKS,
    "rounds": ROUNDS,
    "round_labels": ROUND_LABELS,
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
    "final_conflicts": "iris propagate",
    "round_tasks": "iris run (crowd rounds)",
    "rounds": "iris run (crowd rounds)",
    "round_labels": "iris run (crowd rounds)",
}

REDO_STAGE = {
    "images": "ingest",
    "rejects": "ingest",
    "manifest_rows": "ingest",
    "pseudolabels": "pseudolabel",
    "member_votes": "pseudolabel",
    "shortlist": "select",
    "answers": "crowd",
    "round_tasks": "crowd",
    "rounds": "crowd",
    "round_labels": "crowd",
    "aggregated": "aggregate",
    "workers": "aggregate",
    "final_labels": "propagate",
    "final_conflicts": "propagate",
}
"""The ``iris run`` stage that writes each table: the one to redo when a table is damaged."""


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
    """Read a stage table; a missing one names the command that makes it.

    Raises:
        StageOrderError: the table does not exist yet.
        WorkdirError: the file is there but is not a whole parquet file (truncated, empty,
            overwritten): one line naming it and the ``iris run --redo`` that rewrites it.
        ColumnError: a column of ``schema`` is missing.
    """
    if not path.exists():
        maker = PRODUCED_BY.get(path.stem, "the stage that writes it")
        raise StageOrderError(f"{path} does not exist yet; run `{maker}` first")
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as exc:
        raise damaged(path, exc) from None
    return check(frame, schema, where=str(path)) if schema else frame


def damaged(path: Path, exc: BaseException) -> WorkdirError:
    """The one-line error for a table file that cannot be read (what reading it said, the fix)."""
    size = path.stat().st_size if path.exists() else 0
    said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    stage = REDO_STAGE.get(path.stem)
    fix = f"`iris run --redo {stage}`" if stage else "the stage that writes it"
    # "Delete it": a stage may read its own earlier output to resume (ingest does), and
    # would stop again on the damaged file before writing a new one.
    return WorkdirError(
        f"{path} is damaged ({size} bytes, not a readable parquet file: {said}); "
        f"delete it and write it again with {fix}"
    )


__all__ = [
    "ORIGINS",
    "SPLITS",
    "STATUSES",
    "Origin",
    "Split",
    "Status",
    "initial_status",
]
