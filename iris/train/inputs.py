"""Input sources of the fit loop: fine-tuning on images, or the head alone on frozen features.

Both give the same thing (:class:`InputSource`): the module to train, its parameter groups
with their learning-rate scales, the steps per epoch, and two batch factories — shuffled
training batches from an epoch's generator, validation batches in order. Batches are
``(inputs, labels, weights)``.

* :func:`fine_tune` — pixels through the whole model (backbone at ``backbone_lr_scale``),
  augmented when ``train.augment``; a last batch of one image is dropped (BatchNorm).
* :func:`frozen_features` — the backbone's features are computed once (no augmentation;
  cached under ``models/classifier/``) and only the head trains, which is what fits on 2
  CPU cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from iris.config import TrainSettings
from iris.progress import bar
from iris.train.checkpoint import save_checkpoint
from iris.train.data import ImageDataset, Splits
from iris.train.heads import Classifier, HeadOnly

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class InputSource:
    """What the fit loop trains and the batches it trains on."""

    trainable: nn.Module
    groups: list[dict[str, Any]]
    """Optimizer parameter groups."""
    scales: list[float]
    """Learning-rate scale per group."""
    steps_per_epoch: int
    train_batches: Callable[[torch.Generator], Iterator[Batch]]
    val_batches: Callable[[], Iterator[Batch]]


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision (float16) on CUDA; full precision on CPU, where autocast gains nothing."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _batches(loader: DataLoader[Any], *, desc: str, total: int) -> Iterator[Any]:
    progress = bar(desc=desc, total=total, unit="img")
    for batch in loader:
        yield batch
        progress.update(len(batch[0]))
    progress.close()


@torch.no_grad()
def compute_features(
    model: Classifier, dataset: ImageDataset, *, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Backbone features (n, dim) of every image in ``dataset``, in order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    chunks = []
    for pixels, _, _ in _batches(loader, desc="train: features", total=len(dataset)):
        with autocast(device):
            chunks.append(model.features(pixels.to(device)).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0)


def cached_features(
    model: Classifier,
    splits: Splits,
    cfg: TrainSettings,
    config: dict[str, Any],
    folder: Path,
    device: torch.device,
) -> torch.Tensor:
    """Features of every training image, computed once per backbone/size/image set and cached."""
    key = hashlib.sha256(
        json.dumps(config, sort_keys=True).encode() + splits.frame["id"].to_numpy().tobytes()
    ).hexdigest()[:16]
    path = folder / f"features-{key}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    frame = splits.frame
    dataset = ImageDataset(
        frame["path"].to_list(),
        frame["label"].to_numpy(),
        np.ones(frame.height),
        image_size=cfg.image_size,
        augment=False,
    )
    features = compute_features(model, dataset, batch_size=cfg.batch_size, device=device)
    for stale in folder.glob("features-*.pt"):
        stale.unlink()
    save_checkpoint(features, path)  # type: ignore[arg-type]
    return features


class TensorBatches:
    """Shuffled (features, labels, weights) batches for training the head alone."""

    def __init__(
        self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, batch: int
    ) -> None:
        self.features, self.labels, self.weights, self.batch = features, labels, weights, batch

    def __call__(self, generator: torch.Generator | None) -> Iterator[Batch]:
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, self.batch):
            index = order[start : start + self.batch]
            yield self.features[index], self.labels[index], self.weights[index]


def frozen_features(
    model: Classifier,
    splits: Splits,
    weights: npt.NDArray[np.float64],
    *,
    cfg: TrainSettings,
    config: dict[str, Any],
    folder: Path,
    device: torch.device,
) -> InputSource:
    """The head alone, on cached backbone features (the backbone is frozen)."""
    for parameter in model.net.parameters():
        parameter.requires_grad_(False)
    features = cached_features(model, splits, cfg, config, folder, device)
    label_t = torch.tensor(splits.frame["label"].to_numpy(), dtype=torch.float32)
    weight_t = torch.tensor(weights, dtype=torch.float32)
    train, val = splits.train, splits.val
    train_source = TensorBatches(features[train], label_t[train], weight_t[train], cfg.batch_size)
    val_source = TensorBatches(features[val], label_t[val], weight_t[val], cfg.batch_size)
    return InputSource(
        trainable=HeadOnly(model.head),
        groups=[{"params": list(model.head.parameters())}],
        scales=[1.0],
        steps_per_epoch=-(-len(train) // cfg.batch_size),
        train_batches=train_source,
        val_batches=lambda: val_source(None),
    )


def fine_tune(
    model: Classifier, splits: Splits, weights: npt.NDArray[np.float64], *, cfg: TrainSettings
) -> InputSource:
    """The whole model on images (augmented for training when ``cfg.augment``)."""
    labels = splits.frame["label"].to_numpy()
    paths = splits.frame["path"].to_list()
    train, val = splits.train, splits.val
    train_set = ImageDataset(
        [paths[i] for i in train],
        labels[train],
        weights[train],
        image_size=cfg.image_size,
        augment=cfg.augment,
    )
    val_set = ImageDataset(
        [paths[i] for i in val], labels[val], weights[val], image_size=cfg.image_size, augment=False
    )
    # A last batch of one image would break BatchNorm's training statistics.
    drop_last = len(train_set) > cfg.batch_size and len(train_set) % cfg.batch_size == 1
    steps = len(train_set) // cfg.batch_size if drop_last else -(-len(train_set) // cfg.batch_size)

    def train_batches(generator: torch.Generator) -> Iterator[Batch]:
        loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=cfg.workers,
            drop_last=drop_last,
        )
        return _batches(loader, desc="train: epoch", total=len(train_set))

    def val_batches() -> Iterator[Batch]:
        loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers)
        return _batches(loader, desc="train: validate", total=len(val_set))

    return InputSource(
        trainable=model,
        groups=[{"params": list(model.net.parameters())}, {"params": list(model.head.parameters())}],
        scales=[cfg.backbone_lr_scale, 1.0],
        steps_per_epoch=steps,
        train_batches=train_batches,
        val_batches=val_batches,
    )


def input_source(
    model: Classifier,
    splits: Splits,
    weights: npt.NDArray[np.float64],
    *,
    cfg: TrainSettings,
    config: dict[str, Any],
    folder: Path,
    device: torch.device,
) -> InputSource:
    """:func:`frozen_features` when ``cfg.freeze_backbone``, else :func:`fine_tune`."""
    if cfg.freeze_backbone:
        return frozen_features(model, splits, weights, cfg=cfg, config=config, folder=folder, device=device)
    return fine_tune(model, splits, weights, cfg=cfg)
