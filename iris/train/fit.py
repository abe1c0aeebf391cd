"""The epoch loop: train, validate, keep the best, checkpoint, tell the hooks, stop early.

Skeleton after torchvision's ``references/classification/train.py``: :func:`train_one_epoch`
and :func:`evaluate` over an :class:`~iris.train.inputs.InputSource`'s batches. Every epoch
reseeds torch from ``(seed, epoch)``: shuffling, augmentation and dropout of epoch e are
the same whether or not the run was interrupted before it. After each epoch's checkpoint
the epoch hooks get an :class:`EpochEnd` — that is how the caller logs, draws
(:class:`iris.report.training.TrainingPlot`) or interrupts; nothing here draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from iris.config import TrainSettings
from iris.train.inputs import Batch, InputSource, autocast

Log = Callable[[str], None]


@dataclass(frozen=True)
class EpochEnd:
    """What an epoch hook is told once an epoch's checkpoint is written."""

    row: dict[str, Any]
    """This epoch's metrics: epoch, train_loss, val_loss, val_accuracy, lr, seconds."""
    history: list[dict[str, Any]]
    """Every epoch so far, earlier runs included (this one last)."""
    improved: bool
    """Whether this epoch is the new best."""


EpochHook = Callable[[EpochEnd], None]


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    losses = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def train_one_epoch(
    model: nn.Module,
    batches: Iterator[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> float:
    """One pass over ``batches`` of (inputs, labels, weights); returns the mean weighted loss."""
    model.train()
    total, seen = 0.0, 0
    for inputs, labels, weights in batches:
        inputs, labels, weights = inputs.to(device), labels.to(device), weights.to(device)
        with autocast(device):
            logits = model(inputs)
        loss = _weighted_bce(logits, labels, weights)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total += float(loss.detach()) * len(labels)
        seen += len(labels)
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterator[Batch], device: torch.device) -> tuple[float, float]:
    """Unweighted loss and accuracy (probability > 0.5) over ``batches``."""
    model.eval()
    total, correct, seen = 0.0, 0, 0
    for inputs, labels, _ in batches:
        inputs, labels = inputs.to(device), labels.to(device)
        with autocast(device):
            logits = model(inputs).float()
        total += float(nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
        correct += int(((logits > 0).float() == labels).sum())
        seen += len(labels)
    return total / max(seen, 1), correct / max(seen, 1)


def _improves(metric: tuple[float, float] | None, best: list[float] | None) -> bool:
    """Best = highest validation accuracy, ties to the lower loss; without a validation split
    every epoch is the best so far."""
    return metric is None or best is None or tuple(metric) > tuple(best)


def fit(
    source: InputSource,
    state: dict[str, Any],
    *,
    cfg: TrainSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    validate: bool,
    checkpoint: Callable[[dict[str, Any], bool], None],
    say: Log,
    hooks: Sequence[EpochHook] = (),
) -> list[float]:
    """Train from ``state["epoch"]`` to ``cfg.epochs`` (or an early stop), updating ``state``.

    Args:
        source: what to train and its batches.
        state: the training state (see :func:`iris.train.resume.fresh_state`), updated in place.
        validate: whether there is a validation split.
        checkpoint: called with (this epoch's row, improved) to write the checkpoints.
        hooks: called with an :class:`EpochEnd` after each epoch's checkpoint.

    Returns:
        Seconds of each epoch run by this call.
    """
    epoch_seconds: list[float] = []
    for epoch in range(state["epoch"], cfg.epochs):
        epoch_start = time.perf_counter()
        generator = seed_epoch(cfg.seed, epoch)
        train_loss = train_one_epoch(
            source.trainable, source.train_batches(generator), optimizer, scheduler, scaler, device
        )
        val_loss: float | None = None
        val_accuracy: float | None = None
        if validate:
            val_loss, val_accuracy = evaluate(source.trainable, source.val_batches(), device)
        seconds = time.perf_counter() - epoch_start
        epoch_seconds.append(seconds)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 5),
            "val_loss": None if val_loss is None else round(val_loss, 5),
            "val_accuracy": None if val_accuracy is None else round(val_accuracy, 5),
            "lr": scheduler.get_last_lr()[-1],
            "seconds": round(seconds, 2),
        }
        metric = (val_accuracy, -val_loss) if val_accuracy is not None and val_loss is not None else None
        improved = _improves(metric, state["best_metric"])
        state["history"].append(row)
        state["epoch"] = epoch + 1
        state["stale_epochs"] = 0 if improved else state["stale_epochs"] + 1
        state["stopped_early"] = metric is not None and state["stale_epochs"] >= cfg.patience
        if improved:
            state["best_epoch"] = epoch + 1
            state["best_metric"] = None if metric is None else list(metric)
        checkpoint(row, improved)
        say(
            f"epoch {epoch + 1}/{cfg.epochs}  train_loss {train_loss:.4f}  "
            + (f"val_loss {val_loss:.4f}  val_acc {val_accuracy:.4f}  " if val_loss is not None else "")
            + f"lr {row['lr']:.2e}  {seconds:.1f} s"
            + ("  (best)" if improved else "")
        )
        end = EpochEnd(row=row, history=state["history"], improved=improved)
        for hook in hooks:
            hook(end)
        if state["stopped_early"]:
            say(f"no improvement for {cfg.patience} epoch(s): stopping early")
            break
    return epoch_seconds
