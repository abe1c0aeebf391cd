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

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings
from iris.contract import StageContext, StageReport
from iris.data.records import load_manifest_rows
from iris.embed.images import load_batch
from iris.progress import bar
from iris.tables import FINAL_LABELS, IMAGES
from iris.train.checkpoint import classifier_dir, load_checkpoint
from iris.train.export import export_classifier, run_onnx, session
from iris.train.submission import PROBABILITY_COLUMN, output_format, separator
from iris.workdir import Workdir


@dataclass
class PredictReport(StageReport):
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
    submission.write_csv(tmp, separator=separator(path))
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


def run(ctx: StageContext) -> PredictReport:
    """The predict stage; ``ctx.options`` may carry ``out`` (a path) and ``probabilities``."""
    out = ctx.options.get("out")
    return predict_workdir(
        ctx.workdir,
        ctx.settings,
        out=Path(out) if out else None,
        probabilities=bool(ctx.options.get("probabilities")),
    )
