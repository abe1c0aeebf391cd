"""The Fashion-MNIST benchmark builder: files in the contest's shape, answer key, ingest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest

from iris import tables
from iris.data.fashion_mnist import DATASET_DIR, build, label_column_for, read_answer_key, read_idx
from iris.data.ingest import ingest
from iris.errors import ColumnError, ConfigError, InputError
from iris.workdir import Workdir


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return build(tmp_path_factory.mktemp("fm"), n_labeled=20, limit=120, seed=1)


def test_files_in_contest_shape(built) -> None:  # type: ignore[no-untyped-def]
    assert built.counts == {"gt": 20, "pool": 100, "test": 20}
    assert built.label_column == "is_shirt"
    gt = built.ground_truth.read_text().splitlines()
    assert gt[0] == "downloadUrl\tis_shirt"
    assert len(gt) == 21
    assert sum(line.endswith("\tTRUE") for line in gt) == 10
    assert sum(line.endswith("\tFALSE") for line in gt) == 10
    pool = built.pool.read_text().splitlines()
    assert pool[0] == "downloadUrl" and len(pool) == 101
    rows = list(openpyxl.load_workbook(built.test, read_only=True).worksheets[0].iter_rows(values_only=True))
    assert rows[0] == ("downloadUrl",) and len(rows) == 21
    for line in gt[1:] + pool[1:]:
        assert (built.root / line.split("\t")[0]).exists()


def test_answer_key_matches_the_dataset(built) -> None:  # type: ignore[no-untyped-def]
    key = read_answer_key(built.answer_key)
    assert key.columns == ["source", "split", "label"]
    assert key.schema["label"] == pl.Int8
    assert key.group_by("split").len().sort("split").rows() == [("pool", 100), ("test", 20)]
    train_labels = read_idx(DATASET_DIR / "train-labels-idx1-ubyte.gz")
    test_labels = read_idx(DATASET_DIR / "t10k-labels-idx1-ubyte.gz")
    for source, split, label in key.iter_rows():
        part, index = re.fullmatch(r"images/(train|test)-(\d{5})\.png", source).groups()  # type: ignore[union-attr]
        cls = (train_labels if part == "train" else test_labels)[int(index)]
        assert cls in (0, 6)
        assert label == int(cls == 6)
        assert (part == "test") == (split == "test")


def test_seeded(tmp_path: Path, built) -> None:  # type: ignore[no-untyped-def]
    same = build(tmp_path / "a", n_labeled=20, limit=120, seed=1)
    other = build(tmp_path / "b", n_labeled=20, limit=120, seed=2)
    assert same.ground_truth.read_text() == built.ground_truth.read_text()
    assert other.ground_truth.read_text() != built.ground_truth.read_text()


def test_other_classes(tmp_path: Path) -> None:
    files = build(tmp_path, positive=7, negative=5, n_labeled=4, limit=12)
    assert files.label_column == "is_sneaker" == label_column_for(7)
    assert label_column_for(0) == "is_t_shirt_top"
    assert (files.positive_name, files.negative_name) == ("Sneaker", "Sandal")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positive": 10}, "--positive 10: expected a Fashion-MNIST class 0..9"),
        ({"positive": 0, "negative": 0}, "both 0"),
        ({"n_labeled": 1}, "at least 2"),
        ({"n_labeled": 20, "limit": 10}, "--limit 10: expected at least"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(tmp_path, **kwargs)


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="install the Debian package dataset-fashion-mnist"):
        build(tmp_path / "out", root=tmp_path / "nowhere")


def test_answer_key_errors(tmp_path: Path) -> None:
    bad = tmp_path / "key.csv"
    bad.write_text("downloadUrl,is_shirt\na.png,TRUE\n")
    with pytest.raises(ColumnError, match=r"missing column\(s\) split"):
        read_answer_key(bad)
    bad.write_text("downloadUrl,split,is_shirt\na.png,pool,TRUE\nb.png,pool,perhaps\n")
    with pytest.raises(InputError, match=r"key.csv:3: label 'perhaps'"):
        read_answer_key(bad)


def test_ingest_of_the_built_files(built, workdir: Workdir) -> None:  # type: ignore[no-untyped-def]
    settings = workdir.settings(task={"label_column": built.label_column})
    report = ingest(workdir, settings, ground_truth=built.ground_truth, pool=[built.pool], test=built.test)
    assert report.counts == {"gt": 20, "pool": 100, "test": 20}
    assert report.rejects == {}
    images = tables.read(workdir.table("images"), tables.IMAGES)
    key = read_answer_key(built.answer_key)
    joined = key.join(images.select("source", "split"), on="source", how="left", suffix="_ingested")
    assert joined["split_ingested"].to_list() == joined["split"].to_list()
    assert set(images["width"].to_list()) == {28}
