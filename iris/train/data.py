"""Training data: the final labels joined to image files, a validation split, augmentation.

Models take **uint8 RGB pixels (n, size, size, 3)** and normalise inside (the convention of
:mod:`iris.embed.backbones`), so a dataset item is a uint8 HWC tensor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from iris import tables
from iris.embed.images import load_pixels, to_pixels
from iris.errors import InputError, PoolExhaustedError
from iris.tables import FINAL_LABELS, IMAGES
from iris.workdir import Workdir

TRAINING = tables.TRAINING


def training_frame(workdir: Workdir) -> pl.DataFrame:
    """Final labels of non-test images with their files, sorted by id (TRAINING columns).

    Raises:
        StageOrderError: no final labels yet. PoolExhaustedError: one class is missing.
    """
    final = tables.read(workdir.table("final_labels"), FINAL_LABELS)
    images = tables.read(workdir.table("images"), IMAGES).filter(pl.col("split") != "test")
    frame = (
        final.join(images.select("id", "path"), on="id", how="inner")
        .with_columns(path=pl.lit(str(workdir.root) + "/") + pl.col("path"))
        .select(list(TRAINING))
        .sort("id")
    )
    per_class = frame.group_by("label").len()
    if per_class.height < 2:
        raise PoolExhaustedError(
            f"{workdir.table('final_labels')}: training needs both classes, found "
            f"{dict(per_class.iter_rows()) or 'no labeled images'}"
        )
    return tables.check(frame, TRAINING, where="training")


def fingerprint(frame: pl.DataFrame) -> str:
    """A short hash of the labeled set (ids, labels, confidences): a changed set restarts training."""
    digest = hashlib.sha256()
    for column in ("id", "label", "confidence"):
        digest.update(frame[column].to_numpy().tobytes())
    return digest.hexdigest()[:16]


def split_validation(
    labels: npt.NDArray[np.integer[Any]], *, fraction: float, seed: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Stratified (train, validation) index arrays, each sorted.

    Each class gives ``round(fraction * n_class)`` images (at least one when ``fraction > 0``
    and it has two or more) to validation and keeps at least one for training.
    """
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.intp]] = []
    val: list[npt.NDArray[np.intp]] = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = (
            0
            if fraction <= 0 or len(members) < 2
            else min(max(1, round(fraction * len(members))), len(members) - 1)
        )
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def augmentation(image_size: int) -> v2.Transform:
    """Augmentation for uint8 CHW tensors, sized to the images.

    Small images (< 64 px, e.g. 28-px Fashion-MNIST upscaled a little) lose too much to
    random-resized crops, so they get a padded random crop and a flip; larger ones get a
    random-resized crop, a flip and a mild colour jitter.
    """
    if image_size < 64:
        return v2.Compose(
            [
                v2.RandomCrop(image_size, padding=max(1, image_size // 8), padding_mode="reflect"),
                v2.RandomHorizontalFlip(),
            ]
        )
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        ]
    )


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Images as uint8 (size, size, 3) tensors with label and loss weight.

    Args:
        paths: image files.
        labels: (n,) 0/1.
        weights: (n,) per-image loss weights.
        image_size: side in pixels.
        augment: apply :func:`augmentation` (training) or not (validation, features).
    """

    def __init__(
        self,
        paths: list[str],
        labels: npt.NDArray[np.integer[Any]],
        weights: npt.NDArray[np.floating[Any]],
        *,
        image_size: int,
        augment: bool,
    ) -> None:
        self.paths = paths
        self.labels = torch.tensor(np.asarray(labels), dtype=torch.float32)
        self.weights = torch.tensor(np.asarray(weights), dtype=torch.float32)
        self.image_size = image_size
        self.transform = augmentation(image_size) if augment else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        path = Path(self.paths[index])
        if self.transform is None:
            pixels = torch.from_numpy(load_pixels(path, self.image_size).copy())
        else:
            try:
                with Image.open(path) as image:
                    image.load()
                    base = to_pixels(image, self.image_size)
            except (FileNotFoundError, OSError) as exc:
                raise InputError(
                    f"{path}: cannot read training image ({exc}); re-run `iris ingest`"
                ) from None
            chw = torch.from_numpy(base.copy()).permute(2, 0, 1)
            pixels = self.transform(chw).permute(1, 2, 0).contiguous()
        return pixels, self.labels[index], self.weights[index]


@dataclass(frozen=True)
class Splits:
    """The training set split for one run; indices into ``frame``."""

    frame: pl.DataFrame
    train: npt.NDArray[np.intp]
    val: npt.NDArray[np.intp]

    def weights(self, *, confidence_weighting: bool) -> npt.NDArray[np.float64]:
        """Per-image loss weights: the label confidence, or 1."""
        if confidence_weighting:
            return self.frame["confidence"].fill_null(1.0).to_numpy().astype(np.float64)
        return np.ones(self.frame.height, dtype=np.float64)
