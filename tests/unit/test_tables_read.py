"""``tables.read``: a damaged parquet file is one line naming it and the stage to redo."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from iris import tables
from iris.errors import StageOrderError, WorkdirError


def images_table(path: Path) -> bytes:
    rows = [
        {"id": i, "source": f"s{i}.png", "path": f"images/{i}.png", "split": "pool", "label": None,
         "width": 8, "height": 8, "sha256": f"{i:064x}"}
        for i in range(200)
    ]  # fmt: skip
    tables.write(tables.check(pl.DataFrame(rows), tables.IMAGES, where="test"), path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("cut", "said"),
    [
        (lambda b: b[: len(b) // 2], "The file must end with PAR1 or PARE"),
        (lambda b: b"", "A Parquet file must contain a header and footer with at least 12 bytes"),
        (lambda b: b"PAR1" + b"\0" * 100 + b"PAR1", "FileMetaData.version missing"),
    ],
    ids=["half", "empty", "junk"],
)
def test_a_damaged_table_is_one_line_with_the_stage_to_redo(tmp_path: Path, cut, said: str) -> None:
    path = tmp_path / "tables" / "images.parquet"
    data = cut(images_table(path))
    path.write_bytes(data)
    with pytest.raises(WorkdirError) as caught:
        tables.read(path, tables.IMAGES)
    assert str(caught.value) == (
        f"{path} is damaged ({len(data)} bytes, not a readable parquet file: parquet: File out of "
        f"specification: {said}); delete it and write it again with `iris run --redo ingest`"
    )


@pytest.mark.parametrize(
    ("name", "stage"),
    [("pseudolabels", "pseudolabel"), ("shortlist", "select"), ("answers", "crowd"),
     ("aggregated", "aggregate"), ("final_labels", "propagate")],
)  # fmt: skip
def test_each_table_names_the_stage_that_writes_it(tmp_path: Path, name: str, stage: str) -> None:
    path = tmp_path / f"{name}.parquet"
    path.write_bytes(b"")
    with pytest.raises(WorkdirError, match=rf"write it again with `iris run --redo {stage}`$"):
        tables.read(path)


def test_a_table_of_no_stage_says_so(tmp_path: Path) -> None:
    path = tmp_path / "mine.parquet"
    path.write_bytes(b"")
    with pytest.raises(WorkdirError, match=r"write it again with the stage that writes it$"):
        tables.read(path)


def test_every_contract_table_has_a_stage_to_redo() -> None:
    from iris.pipeline import STAGE_NAMES

    assert set(tables.CONTRACTS) <= set(tables.REDO_STAGE)
    assert set(tables.REDO_STAGE.values()) <= set(STAGE_NAMES)


def test_a_missing_table_still_names_its_command(tmp_path: Path) -> None:
    with pytest.raises(StageOrderError, match="does not exist yet; run `iris ingest` first"):
        tables.read(tmp_path / "images.parquet")
