"""The run report draws the pictures from what the stages wrote, and redraws the
t-SNE map only when the tables it shows changed."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from iris.config import Settings
from iris.report import summary
from iris.workdir import init_workdir


def test_the_map_is_redrawn_only_after_its_tables_change(tmp_path: Path, monkeypatch) -> None:
    workdir = init_workdir(tmp_path / "work")
    drawn: list[Path] = []

    def fake_map(w, s, store) -> Path:
        png = w.reports / "embedding_map.png"
        png.write_bytes(b"png")
        drawn.append(png)
        return png

    monkeypatch.setattr("iris.report.embedding_map.embedding_map", fake_map)
    monkeypatch.setattr("iris.store.open_store", lambda w, s: nullcontext(None))
    for name in ("pseudolabels", "shortlist"):
        workdir.table(name).write_bytes(b"table")

    assert summary._embedding_map(workdir, Settings()) == [workdir.reports / "embedding_map.png"]
    assert len(drawn) == 1
    summary._embedding_map(workdir, Settings())
    assert len(drawn) == 1  # tables unchanged: the map is kept
    later = workdir.reports.joinpath("embedding_map.png").stat().st_mtime + 10
    os.utime(workdir.table("shortlist"), (later, later))
    summary._embedding_map(workdir, Settings())
    assert len(drawn) == 2  # a new shortlist: drawn again
