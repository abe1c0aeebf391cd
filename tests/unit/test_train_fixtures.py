"""Helpers (no tests): a tiny work directory for training and prediction tests, digits 0 vs 1 at 32 px."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from PIL import Image
from sklearn.datasets import load_digits

from iris import tables
from iris.tables import FINAL_LABELS, IMAGES
from iris.workdir import Workdir


def make_digits_workdir(
    workdir: Workdir, *, n_labeled: int = 48, n_test: int = 12, n_pool: int = 0
) -> dict[str, int]:
    """Write images, images table and final labels; returns the true label of each test source.

    Images are ``n_labeled`` ground truth (all in final_labels), then ``n_pool`` unlabeled
    pool images (not in final_labels), then ``n_test`` test images.
    """
    digits = load_digits(n_class=2)
    n = n_labeled + n_pool + n_test
    rows = []
    truth: dict[str, int] = {}
    for i in range(n):
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
        image = Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")
        image_id = 1000 + i
        path = f"images/{image_id}.png"
        image.save(workdir.root / path)
        split = "gt" if i < n_labeled else ("pool" if i < n_labeled + n_pool else "test")
        source = f"data/digit_{i}.png"
        rows.append((image_id, source, path, split, int(digits.target[i]) if split == "gt" else None))
        if split == "test":
            truth[source] = int(digits.target[i])
    images = pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "source": [r[1] for r in rows],
            "path": [r[2] for r in rows],
            "split": [r[3] for r in rows],
            "label": [r[4] for r in rows],
            "width": [32] * n,
            "height": [32] * n,
            "sha256": [str(r[0]) for r in rows],
        }
    )
    tables.write(tables.check(images, IMAGES, where="fixture"), workdir.table("images"))
    labeled = images.filter(pl.col("split") == "gt")
    final = labeled.select(
        "id",
        "label",
        origin=pl.lit("gt"),
        confidence=pl.Series([0.6 + 0.4 * (i % 2) for i in range(labeled.height)]),
    )
    tables.write(tables.check(final, FINAL_LABELS, where="fixture"), workdir.table("final_labels"))
    return truth


def write_ingest_record(workdir: Workdir, test_sources: list[str], *, extra: list[str] = ()) -> list[str]:
    """A test manifest's rows (``manifest_rows`` table) and ``tables/ingest.json``, as ingest writes them.

    ``extra`` sources are test rows whose image was never ingested (a failed download).
    Returns the sources in manifest order.
    """
    from iris.data.ids import image_id
    from iris.tables import MANIFEST_ROWS

    images = tables.read(workdir.table("images"), IMAGES)
    id_of = dict(zip(images["source"].to_list(), images["id"].to_list(), strict=True))
    order = list(test_sources)
    for i, source in enumerate(extra):  # interleave the missing ones
        order.insert(min(2 * i + 1, len(order)), source)
    manifest = workdir.root / "test.xlsx"
    rows = pl.DataFrame(
        {
            "split": ["test"] * len(order),
            "file": [str(manifest)] * len(order),
            "line": list(range(2, len(order) + 2)),
            "raw": [s + " \t" for s in order],
            "source": order,
            "id": [id_of.get(s, image_id(s)) for s in order],
            "label": [None] * len(order),
        },
        schema=MANIFEST_ROWS,
    )
    tables.write(rows, workdir.table("manifest_rows"))
    record = {
        "version": 1,
        "task": {
            "source_column": "downloadUrl",
            "label_column": "is_conifer",
            "positive": "TRUE",
            "negative": "FALSE",
        },
        "splits": {
            "test": [
                {"path": str(manifest), "format": "xlsx", "source_column": "downloadUrl", "rows": len(order)}
            ]
        },
    }
    (workdir.tables / "ingest.json").write_text(json.dumps(record), encoding="utf-8")
    return order
