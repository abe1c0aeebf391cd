"""How hard each image is for people, from something iris never sees: the answer key.

A simulated person errs more on an image that is genuinely ambiguous. What makes an image
ambiguous must not be iris's own doubt (the kNN ensemble's share, say): a strategy that
buys the images iris doubts would then, by construction, buy exactly the images people
find hard, and a benchmark of strategies would measure the simulation, not the strategy.

So the difficulty is the margin of a *separate* model: a logistic regression on the
images' raw pixels (grey, :data:`SIDE` × :data:`SIDE`, scaled to [0, 1]), trained on the
true labels, **cross-fitted** (:data:`FOLDS` folds: each image is scored by the model fit
on the other folds, so its own label is not memorised). With ``p`` the out-of-fold
probability of the image's true class, ::

    difficulty = scale · (1 − p)

an image the pixel model finds obvious is easy (≈ 0), one it leans the wrong way on is
hard (up to ``scale``). iris never reads the answer key while labeling and never fits
this model; only the simulated crowd and the benchmarks use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from iris.errors import InputError

SIDE = 28
"""Images are read grey at this side (Fashion-MNIST's own size) before the fit."""
FOLDS = 5
"""Cross-fitting folds."""
SCALE = 0.8
"""Difficulty of an image the pixel model is certain is of the other class."""
C = 0.01
"""Inverse L2 strength of the logistic regression (strong: 784 pixels, a few thousand images)."""


def read_pixels(paths: Sequence[Path], *, side: int = SIDE) -> npt.NDArray[np.float32]:
    """(n, side²) grey pixels in [0, 1] of the image files, resized to ``side`` × ``side``.

    Raises:
        InputError: a file is missing or not an image (its path).
    """
    out = np.zeros((len(paths), side * side), dtype=np.float32)
    for row, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                grey = image.convert("L")
                if grey.size != (side, side):
                    grey = grey.resize((side, side), Image.Resampling.BILINEAR)
                out[row] = np.asarray(grey, dtype=np.float32).reshape(-1) / 255.0
        except (OSError, ValueError) as exc:
            raise InputError(f"difficulty: cannot read image {path} ({exc})") from None
    return out


def pixel_difficulty(
    pixels: npt.NDArray[np.floating],
    labels: npt.NDArray[np.integer],
    *,
    scale: float = SCALE,
    folds: int = FOLDS,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """(n,) difficulty in [0, scale]: ``scale · (1 − p_true)`` of a cross-fitted pixel model.

    Args:
        pixels: (n, d) features of each image (raw pixels).
        labels: (n,) true labels, 0 or 1.
        scale: the difficulty of an image the model puts certainly in the other class.
        folds: cross-fitting folds (each image is scored by a model that never saw it).
        seed: seeds the folds.

    Raises:
        InputError: shapes disagree, labels are not 0/1, or a class has fewer images than folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(pixels, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise InputError(f"difficulty: pixels of shape {x.shape} and labels of shape {y.shape} disagree")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"difficulty: labels must be 0 or 1, got {sorted(set(y.tolist()) - {0, 1})[:3]}")
    smallest = int(min((y == 0).sum(), (y == 1).sum()))
    if smallest < folds:
        raise InputError(
            f"difficulty: {smallest} image(s) in the smaller class, expected at least folds={folds}"
        )
    p_true = np.zeros(len(y), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, score_rows in splitter.split(x, y):
        model = LogisticRegression(C=C, max_iter=200).fit(x[fit_rows], y[fit_rows])
        p1 = model.predict_proba(x[score_rows])[:, 1]
        p_true[score_rows] = np.where(y[score_rows] == 1, p1, 1.0 - p1)
    return np.clip(scale * (1.0 - p_true), 0.0, scale)


__all__ = ["FOLDS", "SCALE", "SIDE", "C", "pixel_difficulty", "read_pixels"]
