"""Short supervised fine-tune of a backbone on the ground truth.

The skeleton follows torchvision's ``references/classification/train.py``
(:func:`train_one_epoch`, :func:`evaluate`, a checkpoint dict) without its ``args``
namespace. A linear head is trained with the backbone on a stratified train fold; a
held-out fold reports accuracy; afterwards the head is dropped and only the feature
extractor (a :class:`~iris.embed.backbones.PixelNet`) is kept and saved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torchvision.transforms import v2

from iris.embed.backbones import PixelNet, build_pixel_net
from iris.errors import InputError, ModelError
from iris.progress import bar


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tune did and how well the head separated the held-out fold."""

    epochs: int
    train_size: int
    heldout_size: int
    heldout_accuracy: float | None
    """Accuracy of the fine-tuned model on the held-out fold after the last epoch; None without one."""
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch``, ``loss`` (train), ``heldout_accuracy`` (when there is a fold)."""
    trained_on: tuple[int, ...] = ()
    """Positions (in the ``labels`` given) of the images the fine-tune trained on: their
    embeddings are pulled towards their class, so accuracy estimates should not score them."""


def split_heldout(
    labels: npt.NDArray[np.integer[Any]], *, fraction: float, seed: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Stratified (train, held-out) index arrays; held-out is empty when a class has < 2 images.

    Every class keeps at least one training image and gives ``round(fraction * n_class)``
    (at least one) images to the held-out fold.
    """
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.intp]] = []
    heldout: list[npt.NDArray[np.intp]] = []
    classes, counts = np.unique(labels, return_counts=True)
    if fraction <= 0 or counts.min() < 2:
        return np.arange(len(labels)), np.zeros(0, dtype=np.intp)
    for cls in classes:
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_out = min(max(1, round(fraction * len(members))), len(members) - 1)
        heldout.append(members[:n_out])
        train.append(members[n_out:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(heldout))


def augmentation(image_size: int) -> v2.Transform:
    """Mild augmentation for uint8 CHW tensors: flips, small crops and small affine moves."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05)),
        ]
    )


class Classifier(nn.Module):
    """A :class:`PixelNet` with a dropout + linear head, for fine-tuning only."""

    def __init__(self, net: PixelNet, n_classes: int = 2) -> None:
        super().__init__()
        self.net = net
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(net.dim, n_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.net(pixels)))  # type: ignore[no-any-return]


def _augment(batch: torch.Tensor, transform: v2.Transform) -> torch.Tensor:
    # v2 transforms draw one set of parameters per call, so apply them image by image.
    chw = batch.permute(0, 3, 1, 2)
    return torch.stack([transform(image) for image in chw]).permute(0, 2, 3, 1).contiguous()


def train_one_epoch(
    model: Classifier,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    transform: v2.Transform,
    generator: torch.Generator,
    progress: Any,
) -> float:
    """One pass over (pixels (n, s, s, 3) uint8, labels (n,)); returns the mean training loss."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    order = torch.randperm(len(labels), generator=generator)
    total, seen = 0.0, 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2:  # BatchNorm cannot train on a single image
            continue
        inputs = _augment(pixels[index], transform)
        loss = criterion(model(inputs), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(index)
        seen += len(index)
        progress.update(1)
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(model: Classifier, pixels: torch.Tensor, labels: torch.Tensor, *, batch_size: int) -> float:
    """Accuracy of ``model`` on (pixels (n, s, s, 3) uint8, labels (n,))."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(pixels[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / max(len(labels), 1)


def one_cycle(
    optimizer: torch.optim.Optimizer, *, max_lr: list[float], total_steps: int, warmup_share: float = 0.2
) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle rates: ``warmup_share`` of the steps up to ``max_lr``, then annealed down.

    The warmup is a whole number of steps, at least 2 (``OneCycleLR`` divides by zero when
    it is exactly one step: ``pct_start * total_steps == 1``, e.g. one epoch of 5 batches,
    which is 200 labels at batch 32). A run too short for a cycle (under 3 steps) keeps
    ``max_lr`` constant.

    Raises:
        ValueError: ``total_steps`` < 1.
    """
    if total_steps < 1:
        raise ValueError(f"one_cycle: total_steps={total_steps}, expected >= 1")
    warmup = max(2, round(warmup_share * total_steps))
    if total_steps <= warmup:
        for group, rate in zip(optimizer.param_groups, max_lr, strict=True):
            group["lr"] = rate
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=warmup / total_steps
    )


def finetune(
    net: PixelNet,
    pixels: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer[Any]],
    *,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    lr: float = 1e-3,
    backbone_lr: float = 2e-4,
) -> FinetuneResult:
    """Fine-tune ``net`` in place on labeled images; the head is discarded afterwards.

    Args:
        net: the feature extractor to adapt (modified in place, left in eval mode).
        pixels: uint8 images, shape (n, size, size, 3).
        labels: 0/1 labels, shape (n,).
        epochs: passes over the train fold; 0 returns at once (frozen features).
        batch_size: images per optimiser step.
        seed: seeds the split, the shuffling, the augmentation and the head.
        heldout_fraction: share of each class kept out to report accuracy.
        lr: learning rate of the new head; ``backbone_lr`` that of the pretrained body.

    Raises:
        InputError: fewer than two labeled images of each class, or labels not 0/1.
    """
    labels = np.asarray(labels)
    if len(pixels) != len(labels):
        raise InputError(f"fine-tune: {len(pixels)} images but {len(labels)} labels")
    if epochs < 0:
        raise ModelError(f"embed.finetune_epochs: got {epochs}, expected >= 0")
    if epochs == 0:
        net.eval()
        return FinetuneResult(0, 0, 0, None, 0.0)
    counts = {int(c): int((labels == c).sum()) for c in (0, 1)}
    if set(np.unique(labels).tolist()) - {0, 1}:
        raise InputError(f"fine-tune: labels must be 0/1, found {sorted(set(np.unique(labels).tolist()))}")
    if min(counts.values()) < 2:
        raise InputError(
            f"fine-tune needs at least 2 ground-truth images of each class, found {counts[0]} of class 0 "
            f"and {counts[1]} of class 1; label more images or use --finetune-epochs 0"
        )
    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_idx, heldout_idx = split_heldout(labels, fraction=heldout_fraction, seed=seed)
    all_pixels = torch.from_numpy(np.ascontiguousarray(pixels))
    all_labels = torch.from_numpy(labels.astype(np.int64))
    x_train, y_train = all_pixels[train_idx], all_labels[train_idx]
    x_out, y_out = all_pixels[heldout_idx], all_labels[heldout_idx]

    model = Classifier(net)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.head.parameters(), "lr": lr},
            {"params": model.net.parameters(), "lr": backbone_lr},
        ],
        weight_decay=1e-4,
    )
    steps_per_epoch = max(1, sum(1 for s in range(0, len(train_idx), batch_size) if len(train_idx) - s >= 2))
    scheduler = one_cycle(optimizer, max_lr=[lr, backbone_lr], total_steps=epochs * steps_per_epoch)
    transform = augmentation(int(pixels.shape[1]))
    history: list[dict[str, float]] = []
    accuracy: float | None = None
    progress = bar(desc="fine-tune", total=epochs * steps_per_epoch, unit="batch")
    try:
        for epoch in range(epochs):
            loss = train_one_epoch(
                model,
                x_train,
                y_train,
                optimizer=optimizer,
                scheduler=scheduler,
                batch_size=batch_size,
                transform=transform,
                generator=generator,
                progress=progress,
            )
            row = {"epoch": float(epoch + 1), "loss": loss}
            if len(heldout_idx):
                accuracy = evaluate(model, x_out, y_out, batch_size=batch_size)
                row["heldout_accuracy"] = accuracy
                progress.set_postfix(loss=f"{loss:.3f}", heldout=f"{accuracy:.3f}")
            history.append(row)
    finally:
        progress.close()
    net.eval()
    return FinetuneResult(
        epochs=epochs,
        train_size=len(train_idx),
        heldout_size=len(heldout_idx),
        heldout_accuracy=accuracy,
        seconds=time.perf_counter() - started,
        history=history,
        trained_on=tuple(int(i) for i in train_idx),
    )


def save_checkpoint(
    net: PixelNet, path: Path, *, image_size: int, weights: str, result: FinetuneResult
) -> Path:
    """Save the feature extractor and what produced it to ``path`` (a torch checkpoint dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "backbone": net.backbone_name,
            "image_size": image_size,
            "weights": weights,
            "epochs": result.epochs,
            "heldout_accuracy": result.heldout_accuracy,
            "state_dict": net.state_dict(),
        },
        tmp,
    )
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> PixelNet:
    """Rebuild the :class:`PixelNet` saved by :func:`save_checkpoint`.

    Raises:
        ModelError: the file is missing or not an iris embedder checkpoint.
    """
    if not path.is_file():
        raise ModelError(f"{path} does not exist; run `iris embed` to fine-tune and save the embedder")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        net = build_pixel_net(data["backbone"], weights="none", image_size=int(data["image_size"]))
        net.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(f"{path}: not an iris embedder checkpoint ({type(exc).__name__}: {exc})") from None
    return net.eval()
