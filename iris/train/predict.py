"""``iris predict``: the final model, exported to ONNX, over the test manifest → a submission.

One output row per test manifest row, in the manifest's order, with the source as
ingested (cleaned) and the label written the way the input writes it: for the contest,
``downloadUrl,is_conifer`` with ``TRUE``/``FALSE``. Rows whose image could not be ingested
(download failed, empty cell) still get a row: the majority class of the final labels,
counted as ``fallback`` in the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings
from iris.data.ingest import load_ingest_record, load_manifest_rows
from iris.embed.images import load_batch
from iris.errors import InputError
from iris.progress import bar
from iris.tables import FINAL_LABELS, IMAGES
from iris.train.export import export_classifier, run_onnx, session
from iris.train.loop import classifier_dir, load_checkpoint
from iris.workdir import Workdir

PROBABILITY_COLUMN = "probability"


@dataclass
class PredictReport:
    submission: str
    rows: int
    """Test manifest rows answered (every row of the test manifest)."""
    images: int
    """Distinct test images run through the model."""
    positive: int
    """Rows labeled with the positive class."""
    fallback: int
    """Rows without an ingested image, answered with the majority class."""
    onnx: str
    parity_max_abs_diff: float
    seconds: float
    images_per_second: float | None


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


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","


def predict_workdir(
    workdir: Workdir,
    settings: Settings,
    *,
    out: Path | None = None,
    probabilities: bool = False,
    batch_size: int | None = None,
) -> PredictReport:
    """Export the best checkpoint to ONNX if needed and write the submission.

    Args:
        out: submission file (default ``WORK/submission.csv``); ``.tsv``/``.txt`` write tabs.
        probabilities: add a ``probability`` column (of the positive class).
        batch_size: images per ONNX Runtime call (default ``train.batch_size``).

    Raises:
        StageOrderError: no ingest record, manifest rows or checkpoint yet.
        ModelError: export or parity failure.
    """
    started = time.perf_counter()
    fmt = output_format(workdir, settings)
    rows = load_manifest_rows(workdir, "test")
    images = tables.read(workdir.table("images"), IMAGES)
    final = tables.read(workdir.table("final_labels"), FINAL_LABELS)
    prior_positive = float(final["label"].mean() or 0.0)  # type: ignore[arg-type]

    wanted = rows.filter(pl.col("id").is_not_null()).select("id").unique(maintain_order=True)
    todo = wanted.join(images.select("id", "path"), on="id", how="inner")
    paths = [workdir.root / p for p in todo["path"].to_list()]

    batch = batch_size or settings.train.batch_size
    size = int(load_checkpoint(classifier_dir(workdir) / "best.pt")["config"]["image_size"])
    # Parity is checked on real test images (random pixels only when there are none).
    exported = export_classifier(workdir, parity_pixels=load_batch(paths[:8], size) if paths else None)
    sess = session(exported.path)
    probs = np.zeros(len(paths), dtype=np.float32)
    progress = bar(desc="predict", total=len(paths), unit="img")
    infer_start = time.perf_counter()
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        probs[start : start + len(chunk)] = run_onnx(sess, load_batch(chunk, size))
        progress.update(len(chunk))
    progress.close()
    infer_seconds = time.perf_counter() - infer_start

    scored = todo.select("id").with_columns(probability=pl.Series(probs, dtype=pl.Float64))
    answered = rows.join(scored, on="id", how="left", maintain_order="left")
    fallback = int(answered["probability"].is_null().sum())
    answered = answered.with_columns(pl.col("probability").fill_null(prior_positive))
    positive = answered["probability"] > 0.5
    submission = pl.DataFrame(
        {
            fmt.source_column: answered["source"],
            fmt.label_column: pl.Series(
                np.where(positive.to_numpy(), fmt.positive, fmt.negative), dtype=pl.String
            ),
        }
    )
    if probabilities:
        submission = submission.with_columns(answered["probability"].round(6).alias(PROBABILITY_COLUMN))
    path = out or workdir.root / "submission.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    submission.write_csv(tmp, separator=_separator(path))
    tmp.replace(path)
    return PredictReport(
        submission=str(path),
        rows=submission.height,
        images=len(paths),
        positive=int(positive.sum()),
        fallback=fallback,
        onnx=str(exported.path),
        parity_max_abs_diff=exported.max_abs_diff,
        seconds=round(time.perf_counter() - started, 2),
        images_per_second=round(len(paths) / infer_seconds, 1) if paths and infer_seconds > 0 else None,
    )


def read_submission(path: Path, workdir: Workdir, settings: Settings | None = None) -> pl.DataFrame:
    """Parse a submission back: columns ``source`` (String), ``label`` (Int8 0/1) and, when
    present, ``probability``.

    Raises:
        ColumnError: a column of the input's format is missing.
        InputError: a label cell is neither the positive nor the negative value (file:line).
    """
    fmt = output_format(workdir, settings or workdir.settings())
    frame = pl.read_csv(path, separator=_separator(path), infer_schema=False)
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
