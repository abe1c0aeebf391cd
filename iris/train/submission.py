"""The submission file: written in the input's shape by ``iris predict``, read back by the demo.

The columns and label values come from the last ingest (``tables/ingest.json``), with
``[task]`` as fallback, so a contest-shaped input (``downloadUrl,is_conifer`` with
TRUE/FALSE) gets a submission of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings
from iris.data.records import load_ingest_record
from iris.errors import InputError
from iris.workdir import Workdir

PROBABILITY_COLUMN = "probability"


@dataclass(frozen=True)
class OutputFormat:
    source_column: str
    label_column: str
    positive: str
    negative: str


def output_format(workdir: Workdir, settings: Settings) -> OutputFormat:
    """Columns and label values of the input (``tables/ingest.json``; ``[task]`` as fallback)."""
    task = load_ingest_record(workdir).get("task", {})
    return OutputFormat(
        source_column=task.get("source_column") or settings.task.source_column,
        label_column=task.get("label_column") or settings.task.label_column,
        positive=task.get("positive") or settings.task.positive,
        negative=task.get("negative") or settings.task.negative,
    )


def separator(path: Path) -> str:
    """Tab for .tsv/.txt files, comma otherwise."""
    return "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","


def read_submission(path: Path, workdir: Workdir, settings: Settings | None = None) -> pl.DataFrame:
    """Parse a submission back: columns ``source`` (String), ``label`` (Int8 0/1) and, when
    present, ``probability``.

    Raises:
        ColumnError: a column of the input's format is missing.
        InputError: a label cell is neither the positive nor the negative value (file:line).
    """
    fmt = output_format(workdir, settings or workdir.settings())
    frame = pl.read_csv(path, separator=separator(path), infer_schema=False)
    tables.check(frame, {fmt.source_column: pl.String, fmt.label_column: pl.String}, where=str(path))
    cells = frame[fmt.label_column].str.strip_chars()
    mapping: dict[str, Any] = {fmt.positive.upper(): 1, fmt.negative.upper(): 0}
    labels = cells.str.to_uppercase().replace_strict(mapping, default=None, return_dtype=pl.Int8)
    bad = labels.is_null()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
        raise InputError(
            f"{path}:{line}: label {cells[line - 2]!r} is neither {fmt.positive!r} nor {fmt.negative!r}"
        )
    result = pl.DataFrame({"source": frame[fmt.source_column], "label": labels})
    if PROBABILITY_COLUMN in frame.columns:
        result = result.with_columns(frame[PROBABILITY_COLUMN].cast(pl.Float64).alias(PROBABILITY_COLUMN))
    return result
