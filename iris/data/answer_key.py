"""Answer keys: a CSV (or TSV) of true labels by image source, for benchmarks and dry runs.

One reader for both users of an answer key: the Fashion-MNIST builder's file
(``downloadUrl,split,is_shirt`` with TRUE/FALSE) and any key a user brings to the simulated
crowd (a source column and a label column of 1/0, TRUE/FALSE, yes/no or the class names).
iris never reads an answer key while labeling.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from iris.config import TaskSettings
from iris.data.ids import clean_source
from iris.errors import ColumnError, InputError

POSITIVE = frozenset({"1", "true", "yes"})
NEGATIVE = frozenset({"0", "false", "no"})
_NOT_LABELS = frozenset({"split", "path", "id"})


def parse_label(cell: str, task: TaskSettings | None = None) -> int | None:
    """1, 0 or None (neither) for one label cell; case and surrounding blanks do not matter.

    Accepted: 1/0, TRUE/FALSE, yes/no and, with ``task``, its class values and names.
    """
    v = cell.strip().lower()
    positive, negative = set(POSITIVE), set(NEGATIVE)
    if task is not None:
        positive |= {task.positive.strip().lower(), task.positive_name.strip().lower()}
        negative |= {task.negative.strip().lower(), task.negative_name.strip().lower()}
    if v in positive:
        return 1
    if v in negative:
        return 0
    return None


def read_answer_key(path: Path, *, task: TaskSettings | None = None) -> pl.DataFrame:
    """Read an answer key into source (cleaned as ingest cleans it), label (Int8) and, when
    the file has one, split.

    The source column is the first of ``source``, ``task.source_column``, ``downloadUrl``;
    the label column the first of ``label``, ``task.label_column``, else the only column
    left once source, split, path and id are set aside. TSV by extension (.tsv, .txt).

    Raises:
        InputError: unreadable file, or a label cell that is neither class (with its line).
        ColumnError: no source or no label column.
    """
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected an answer key CSV with source and label")
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","
    try:
        key = pl.read_csv(path, separator=sep, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read as CSV: {exc}") from None
    source_names = ["source", *([task.source_column] if task else []), "downloadUrl"]
    src_col = next((c for c in source_names if c in key.columns), None)
    if src_col is None:
        raise ColumnError(
            f"{path}: no source column ({', '.join(dict.fromkeys(source_names))}); "
            f"found {', '.join(key.columns)}"
        )
    label_names = ["label", *([task.label_column] if task else [])]
    label_col = next((c for c in label_names if c in key.columns), None)
    rest = [c for c in key.columns if c != src_col and c not in _NOT_LABELS]
    if label_col is None and len(rest) == 1:
        label_col = rest[0]
    if label_col is None:
        raise ColumnError(
            f"{path}: no label column ({', '.join(label_names)}, or a single other column); "
            f"found {', '.join(key.columns)}"
        )
    labels: list[int] = []
    for line, cell in enumerate(key[label_col].to_list(), start=2):
        value = parse_label(cell or "", task)
        if value is None:
            classes = f"{task.positive}/1/TRUE nor {task.negative}/0/FALSE" if task else "1/TRUE nor 0/FALSE"
            raise InputError(f"{path}:{line}: label {cell!r} in column {label_col} is neither {classes}")
        labels.append(value)
    columns: dict[str, object] = {"source": [clean_source(s or "") for s in key[src_col].to_list()]}
    if "split" in key.columns:
        columns["split"] = key["split"]
    columns["label"] = pl.Series(labels, dtype=pl.Int8)
    return pl.DataFrame(columns)
