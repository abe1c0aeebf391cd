"""What the virtual people know: the true labels, and how hard each image is for them.

The truth comes from ``crowd.answer_key`` (read by :func:`iris.data.answer_key.read_answer_key`,
matched to tasks by source) for the tasks and from the ground truth for training, exam and
honeypots. No other part of iris reads the answer key while labeling.

Difficulty model: people err more on ambiguous images. The chance of a right answer is
``0.5 + (accuracy − 0.5) · (1 − 0.7 · difficulty)`` (:func:`p_right`), with difficulty
``AMBIGUITY_TO_DIFFICULTY · (1 − knn_share)`` from the ``pseudolabels`` table where present,
otherwise a seeded ``Beta(2, 5)`` draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings, TaskSettings
from iris.crowd.backends.base import CampaignInputs
from iris.data import answer_key
from iris.errors import CrowdError, InputError
from iris.workdir import Workdir

AMBIGUITY_TO_DIFFICULTY = 0.6
"""How much of the kNN ensemble's doubt (1 − knn_share) people share. People look at the
image, not at a 1280-d embedding: an image the ensemble splits on is harder for them too,
but far from a coin toss (at 1.0 nearly every honest worker on a shortlist of ambiguous
images fell under the majority-agreement rule)."""
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


def match_truth(tasks: pl.DataFrame, key: pl.DataFrame, *, where: str) -> dict[int, int]:
    """Map task id → true label by the task's source (exact, resolved path, then unique file name).

    Raises:
        CrowdError: some tasks have no row in the key (count and first example).
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
    if missing:
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


def load_difficulty(inputs: CampaignInputs, ids: list[int], *, seed: int) -> dict[int, float]:
    """Per-image difficulty in [0, 1]: ``AMBIGUITY_TO_DIFFICULTY · (1 − knn_share)`` where
    pseudo-labels exist, else a draw."""
    rng = np.random.default_rng([seed, 11])
    drawn = rng.beta(2.0, 5.0, size=len(ids))
    difficulty = {i: float(d) for i, d in zip(ids, drawn, strict=True)}
    path = Workdir(inputs.root).table("pseudolabels")
    if path.exists():
        schema = {name: tables.PSEUDOLABELS[name] for name in ("id", "knn_share")}
        pseudo = tables.check(pl.read_parquet(path, columns=list(schema)), schema, where=str(path))
        for i, share in zip(pseudo["id"].to_list(), pseudo["knn_share"].to_list(), strict=True):
            if i in difficulty and share is not None:
                difficulty[i] = AMBIGUITY_TO_DIFFICULTY * float(min(max(1.0 - share, 0.0), 1.0))
    return difficulty
