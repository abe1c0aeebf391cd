"""What the virtual people know: the true labels, and how hard each image is for them.

The truth comes from ``crowd.answer_key`` (read by :func:`iris.data.answer_key.read_answer_key`,
matched to tasks by source) for the tasks and from the ground truth for training, exam and
honeypots. No other part of iris reads the answer key while labeling.

Difficulty model: people err more on ambiguous images. The chance of a right answer is
``0.5 + (accuracy − 0.5) · (1 − 0.7 · difficulty)`` (:func:`p_right`), with difficulty the
margin of a cross-fitted logistic regression on the images' raw pixels, trained on the
answer key (:mod:`iris.crowd.difficulty`): something iris never sees, so strategies that buy
the images iris doubts are not handed the images people find hard by construction. It is
fitted once on every ground-truth and pool image the key knows (the same difficulty in every
round and for every strategy) and kept in ``difficulty.parquet`` beside the purchase log.
Without an images table, its files or an answer key (synthetic campaigns) it is a seeded
``Beta(2, 5)`` draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings, TaskSettings
from iris.crowd import difficulty
from iris.crowd.backends.base import CampaignInputs
from iris.data import answer_key
from iris.errors import CrowdError, InputError
from iris.workdir import Workdir

DIFFICULTY: tables.Schema = {"id": pl.Int64, "difficulty": pl.Float64}
"""The cached difficulty table (``WORK/crowd/simulated/difficulty.parquet``)."""
DEFAULT_DIFFICULTY = 0.3
"""Difficulty of an image with none given."""


def p_right(accuracy: float, difficulty: float) -> float:
    """Chance that a person of ``accuracy`` answers an image of ``difficulty`` right."""
    return 0.5 + (accuracy - 0.5) * (1.0 - 0.7 * difficulty)


def _is_url(s: str) -> bool:
    return "://" in s


def read_answer_key(path: Path, *, task: TaskSettings) -> pl.DataFrame:
    """Read an answer key into source, label (see :func:`iris.data.answer_key.read_answer_key`).

    A relative path is also registered resolved against the key's folder, the way ingest
    resolves manifest paths.

    Raises:
        InputError / ColumnError: unreadable file, missing columns, or a label cell that is
            neither class (with its line number).
    """
    if not path.is_file():
        raise InputError(f"crowd.answer_key: {path} does not exist; expected a CSV with source and label")
    key = answer_key.read_answer_key(path, task=task)
    sources: list[str] = []
    labels: list[int] = []
    for src, value in zip(key["source"].to_list(), key["label"].to_list(), strict=True):
        sources.append(src)
        labels.append(value)
        if src and not _is_url(src) and not Path(src).is_absolute():
            sources.append(str((path.parent / src).resolve()))
            labels.append(value)
    return pl.DataFrame({"source": sources, "label": labels}, schema={"source": pl.String, "label": pl.Int8})


def match_truth(tasks: pl.DataFrame, key: pl.DataFrame, *, where: str, strict: bool = True) -> dict[int, int]:
    """Map task id → true label by the task's source (exact, resolved path, then unique file name).

    Args:
        strict: refuse tasks the key lacks; otherwise leave them out of the map.

    Raises:
        CrowdError: (strict) some tasks have no row in the key (count and first example).
    """
    exact = dict(zip(key["source"].to_list(), key["label"].to_list(), strict=True))
    names: dict[str, int | None] = {}
    for src, label in exact.items():
        name = src.rsplit("/", 1)[-1]
        names[name] = label if names.get(name, label) == label and name not in names else None
    truth: dict[int, int] = {}
    missing: list[str] = []
    for tid, src in zip(tasks["id"].to_list(), tasks["source"].to_list(), strict=True):
        candidates = [src]
        if src.startswith("file://"):
            candidates.append(src[len("file://") :])
        if not _is_url(src):
            candidates.append(str(Path(src).resolve()))
        label = next((exact[c] for c in candidates if c in exact), None)
        if label is None:
            label = names.get(src.rsplit("/", 1)[-1])
        if label is None:
            missing.append(src)
        else:
            truth[int(tid)] = int(label)
    if missing and strict:
        raise CrowdError(
            f"simulated crowd: {len(missing)} of {tasks.height} tasks have no row in {where} "
            f"(matched by images.source); first: {missing[0]}"
        )
    return truth


def load_truth(inputs: CampaignInputs, settings: Settings) -> dict[int, int]:
    """True labels of every task and ground-truth image, as the virtual people know them."""
    truth = {
        int(i): int(label)
        for i, label in zip(inputs.ground_truth["id"], inputs.ground_truth["label"], strict=True)
    }
    if inputs.tasks.height:
        if not settings.crowd.answer_key:
            raise CrowdError(
                "simulated crowd: crowd.answer_key is not set; it needs a CSV of true labels "
                "(e.g. answer_key.csv from `iris data fashion-mnist`) for its virtual people"
            )
        path = Path(settings.crowd.answer_key)
        if not path.is_absolute():
            path = (inputs.root / path) if (inputs.root / path).exists() else path.resolve()
        key = read_answer_key(path, task=settings.task)
        truth |= match_truth(inputs.tasks, key, where=str(path))
    return truth


def _answer_key_path(inputs: CampaignInputs, settings: Settings) -> Path:
    path = Path(settings.crowd.answer_key)
    if not path.is_absolute():
        path = (inputs.root / path) if (inputs.root / path).exists() else path.resolve()
    return path


def drawn_difficulty(ids: list[int], *, seed: int) -> dict[int, float]:
    """A seeded ``Beta(2, 5)`` difficulty per id (when no pixels and answer key are at hand)."""
    rng = np.random.default_rng([seed, 11])
    drawn = rng.beta(2.0, 5.0, size=len(ids))
    return {i: float(d) for i, d in zip(ids, drawn, strict=True)}


def fit_difficulty(inputs: CampaignInputs, settings: Settings, *, seed: int) -> pl.DataFrame | None:
    """id, difficulty of every ground-truth and pool image the answer key knows (see the module
    docstring); None without an images table, its image files or an answer key.

    Raises:
        InputError: an image file cannot be read.
    """
    path = Workdir(inputs.root).table("images")
    if not path.exists() or not settings.crowd.answer_key:
        return None
    images = tables.read(path, tables.IMAGES).filter(pl.col("split").is_in(["gt", "pool"]))
    truth = {
        int(i): int(v)
        for i, v, split in zip(images["id"], images["label"], images["split"], strict=True)
        if split == "gt" and v is not None
    }
    key_path = _answer_key_path(inputs, settings)
    key = read_answer_key(key_path, task=settings.task)
    pool = images.filter(pl.col("split") == "pool")
    truth |= match_truth(pool, key, where=str(key_path), strict=False)
    known = images.filter(pl.col("id").is_in(list(truth)))
    if known.height < 2 * difficulty.FOLDS:
        return None
    files = [inputs.root / p for p in known["path"].to_list()]
    if not all(f.is_file() for f in files):
        return None  # tables without their images (synthetic campaigns): nothing to look at
    pixels = difficulty.read_pixels(files)
    labels = np.array([truth[int(i)] for i in known["id"].to_list()], dtype=np.int64)
    if min((labels == 0).sum(), (labels == 1).sum()) < difficulty.FOLDS:
        return None
    values = difficulty.pixel_difficulty(pixels, labels, seed=seed)
    return pl.DataFrame({"id": known["id"], "difficulty": values}, schema=DIFFICULTY)


def load_difficulty(
    inputs: CampaignInputs,
    ids: list[int],
    *,
    seed: int,
    settings: Settings | None = None,
    cache: Path | None = None,
) -> dict[int, float]:
    """Per-image difficulty in [0, 1] for ``ids`` (see the module docstring).

    Args:
        settings: where the answer key is; None (or no images table) draws the difficulty.
        cache: a parquet file (id, difficulty) to reuse, written after a fit.
    """
    difficulty_of = drawn_difficulty(ids, seed=seed)
    if settings is None:
        return difficulty_of
    fitted = None
    if cache is not None and cache.exists():
        fitted = tables.read(cache, DIFFICULTY)
        if not set(ids) <= set(fitted["id"].to_list()):
            fitted = None  # a new pool: fit again
    if fitted is None:
        fitted = fit_difficulty(inputs, settings, seed=seed)
        if fitted is not None and cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tables.write(fitted, cache)
    if fitted is not None:
        wanted = set(ids)
        for i, d in zip(fitted["id"].to_list(), fitted["difficulty"].to_list(), strict=True):
            if i in wanted:
                difficulty_of[i] = float(d)
    return difficulty_of
