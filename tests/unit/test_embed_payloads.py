"""The store's labels follow the images table when a stage re-runs after propagate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from iris import tables
from iris.embed.stage import GONE, restore_labels
from iris.store import open_store
from iris.workdir import init_workdir


def test_restore_labels_undoes_propagated_labels_and_marks_removed_images(tmp_path: Path) -> None:
    wd = init_workdir(tmp_path / "work")
    images = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "source": ["a", "b", "c"],
            "path": ["images/1.png", "images/2.png", "images/3.png"],
            "split": ["gt", "pool", "pool"],
            "label": [0, None, None],  # the ground truth was edited: 1 is now negative
            "width": 8,
            "height": 8,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]
    tables.write(images, wd.table("images"))
    with open_store(wd, wd.settings()) as store:
        store.ensure_collection(dim=4, distance="cosine")
        vectors = np.eye(4, dtype=np.float32)
        store.upsert(
            np.array([1, 2, 3, 4]),
            vectors,
            [
                {"split": "gt", "label": 1, "has_label": True, "origin": "gt"},
                {"split": "pool", "label": 1, "has_label": True, "origin": "propagated", "status": "auto"},
                {"split": "pool", "has_label": False, "status": "problematic"},
                {"split": "pool", "label": 0, "has_label": True, "origin": "crowd"},  # left the pool
            ],
        )
        assert restore_labels(wd, store) == 3
        payloads = dict(zip(store.export().ids.tolist(), store.export().payloads, strict=True))
        assert restore_labels(wd, store) == 0  # nothing left to change: nothing is written
    assert (payloads[1]["label"], payloads[1]["has_label"], payloads[1].get("origin")) == (0, True, None)
    assert (payloads[2].get("label"), payloads[2]["has_label"], payloads[2].get("origin")) == (
        None,
        False,
        None,
    )
    assert payloads[2]["status"] == "auto"  # what pseudolabel and select write is theirs to rewrite
    assert payloads[3] == {"split": "pool", "has_label": False, "status": "problematic"}
    assert (payloads[4]["split"], payloads[4]["has_label"]) == (GONE, False)
