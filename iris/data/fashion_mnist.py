"""The Fashion-MNIST benchmark, written out like the contest's files.

From the Debian package ``dataset-fashion-mnist`` (IDX gzip files under
``/usr/share/datasets/fashion-mnist/``) this builds a binary task — by default Shirt (6,
positive) vs T-shirt/top (0, negative), genuinely ambiguous — as PNG files and manifests
of the contest's shape::

    OUT/images/train-00042.png ...   28x28 grayscale PNGs (named by dataset index)
    OUT/ground_truth.tsv             downloadUrl<TAB>is_shirt (TRUE/FALSE), N labeled rows
    OUT/pool.tsv                     downloadUrl: the rest of the 12,000 train images
    OUT/test.xlsx                    downloadUrl: the 2,000 test images
    OUT/answer_key.csv               downloadUrl,split,is_shirt for pool and test

``downloadUrl`` cells are paths relative to the manifest's folder. The answer key is for
benchmarks and the simulated crowd; iris never reads it while labeling.
"""

from __future__ import annotations

import csv
import gzip
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
from PIL import Image

from iris.data import answer_key
from iris.errors import ColumnError, ConfigError, InputError
from iris.progress import progress

DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class FashionMnistFiles:
    """What :func:`build` wrote."""

    root: Path
    ground_truth: Path
    pool: Path
    test: Path
    answer_key: Path
    label_column: str
    """``is_<positive class>``, e.g. ``is_shirt``."""
    positive_name: str
    negative_name: str
    counts: dict[str, int]
    """Rows per manifest: ``gt``, ``pool``, ``test``."""

    def ingest_command(self, workdir: str = "WORK") -> str:
        """The ``iris ingest`` command line that ingests these files."""
        return (
            f"iris -w {workdir} ingest --ground-truth {self.ground_truth} --pool {self.pool} "
            f"--test {self.test} --label-column {self.label_column}"
        )


def label_column_for(positive: int) -> str:
    """``is_`` and the positive class name in snake case (``6`` → ``is_shirt``)."""
    return "is_" + re.sub(r"[^a-z0-9]+", "_", CLASSES[positive].lower()).strip("_")


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """Read an IDX (optionally gzip) file of unsigned bytes into an array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise InputError(
            f"{path}: Fashion-MNIST file not found; install the Debian package dataset-fashion-mnist"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: unreadable IDX file ({exc})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise InputError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = int(np.prod(shape))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != expected:
        raise InputError(f"{path}: {body.size} bytes of data, expected {expected} for shape {shape}")
    return body.reshape(shape)


def _load(root: Path, part: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    images, labels = (read_idx(root / name) for name in _FILES[part])
    if len(images) != len(labels):
        raise InputError(f"{root}: {len(images)} {part} images but {len(labels)} labels")
    return images, labels


def _check(positive: int, negative: int, n_labeled: int, limit: int | None) -> None:
    for name, value in (("positive", positive), ("negative", negative)):
        if not 0 <= value < len(CLASSES):
            raise ConfigError(f"--{name} {value}: expected a Fashion-MNIST class 0..9")
    if positive == negative:
        raise ConfigError(f"--positive and --negative are both {positive}; expected two different classes")
    if n_labeled < 2:
        raise ConfigError(f"--n-labeled {n_labeled}: expected at least 2 (one per class)")
    if limit is not None and limit < n_labeled + 6:
        raise ConfigError(f"--limit {limit}: expected at least n_labeled + 6 = {n_labeled + 6}")


def build(
    out: Path,
    *,
    positive: int = 6,
    negative: int = 0,
    n_labeled: int = 200,
    seed: int = 0,
    limit: int | None = None,
    root: Path = DATASET_DIR,
) -> FashionMnistFiles:
    """Write the binary Fashion-MNIST task under ``out``.

    Args:
        out: output folder (created; files in it are overwritten).
        positive: Fashion-MNIST class of the positive label (6 Shirt).
        negative: class of the negative label (0 T-shirt/top).
        n_labeled: ground-truth size; half from each class (the extra one positive).
        seed: seeds which images are labeled (and which are kept under ``limit``).
        limit: keep only this many train images (ground truth included) and ``limit // 6``
            test images, for tests and quick runs; ``None`` keeps all (12,000 and 2,000).
        root: folder of the IDX files.

    Raises:
        ConfigError: classes or sizes are out of range.
        InputError: the dataset files are missing or damaged.
    """
    _check(positive, negative, n_labeled, limit)
    rng = np.random.default_rng(seed)
    train_x, train_y = _load(root, "train")
    test_x, test_y = _load(root, "test")

    train_idx = np.flatnonzero(np.isin(train_y, (positive, negative)))
    test_idx = np.flatnonzero(np.isin(test_y, (positive, negative)))
    train_idx = train_idx[rng.permutation(len(train_idx))]
    if limit is not None:
        train_idx = train_idx[:limit]
        test_idx = np.sort(test_idx[rng.permutation(len(test_idx))[: max(1, limit // 6)]])
    want = {positive: n_labeled - n_labeled // 2, negative: n_labeled // 2}
    labeled: list[int] = []
    for cls, count in want.items():
        of_class = train_idx[train_y[train_idx] == cls][:count]
        if len(of_class) < count:
            raise ConfigError(
                f"--n-labeled {n_labeled}: only {len(of_class)} images of class {cls} to label, need {count}"
            )
        labeled.extend(int(i) for i in of_class)
    labeled_set = set(labeled)
    labeled = [int(i) for i in train_idx if int(i) in labeled_set]  # in shuffled order
    pool = [int(i) for i in train_idx if int(i) not in labeled_set]

    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    jobs = [("train", i, train_x[i]) for i in sorted(labeled + pool)] + [
        ("test", int(i), test_x[i]) for i in test_idx
    ]
    for part, index, pixels in progress(jobs, desc="fashion-mnist", unit="img"):
        Image.fromarray(pixels).save(out / "images" / f"{part}-{index:05d}.png", compress_level=1)

    def cell(part: str, index: int) -> str:
        return f"images/{part}-{index:05d}.png"

    def flag(cls: int) -> str:
        return "TRUE" if cls == positive else "FALSE"

    column = label_column_for(positive)
    with (out / "ground_truth.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["downloadUrl", column])
        writer.writerows([cell("train", i), flag(int(train_y[i]))] for i in labeled)
    with (out / "pool.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["downloadUrl"])
        writer.writerows([cell("train", i)] for i in pool)
    _write_xlsx(out / "test.xlsx", [cell("test", int(i)) for i in test_idx])
    with (out / "answer_key.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["downloadUrl", "split", column])
        writer.writerows([cell("train", i), "pool", flag(int(train_y[i]))] for i in pool)
        writer.writerows([cell("test", int(i)), "test", flag(int(test_y[i]))] for i in test_idx)

    return FashionMnistFiles(
        root=out,
        ground_truth=out / "ground_truth.tsv",
        pool=out / "pool.tsv",
        test=out / "test.xlsx",
        answer_key=out / "answer_key.csv",
        label_column=column,
        positive_name=CLASSES[positive],
        negative_name=CLASSES[negative],
        counts={"gt": len(labeled), "pool": len(pool), "test": len(test_idx)},
    )


def _write_xlsx(path: Path, sources: list[str]) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("test")
    sheet.append(["downloadUrl"])
    for source in sources:
        sheet.append([source])
    book.save(path)


def read_answer_key(path: Path) -> pl.DataFrame:
    """Read an answer key written by :func:`build` (see :mod:`iris.data.answer_key`).

    Returns:
        A frame with ``source`` (cleaned as ingest cleans it), ``split`` ("pool" | "test")
        and ``label`` (Int8, 1 positive, 0 negative).

    Raises:
        InputError: the file is missing or a label cell is neither TRUE/1 nor FALSE/0.
        ColumnError: it lacks ``downloadUrl``, ``split`` or its label column.
    """
    key = answer_key.read_answer_key(path)
    if "split" not in key.columns:
        raise ColumnError(
            f"{path}: missing column(s) split; the answer key of `iris data fashion-mnist` has it"
        )
    return key
