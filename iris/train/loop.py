"""Final training: backbone + head on the final labels, with checkpoints and resume.

Skeleton after torchvision's ``references/classification/train.py``: :func:`train_one_epoch`,
:func:`evaluate`, a checkpoint dict (model, optimizer, scheduler, scaler, epoch, best
metric, history). ``models/classifier/last.pt`` is written after every epoch and
``best.pt`` whenever validation improves, each to a temporary file renamed into place, so
a SIGKILL leaves the previous checkpoint intact. A re-run resumes after the last finished
epoch, provided the labeled set and settings are the ones ``last.pt`` was trained with.

Every epoch reseeds torch from ``(seed, epoch)``: shuffling, augmentation and dropout of
epoch e are the same whether or not the run was interrupted before it.

``freeze_backbone`` computes the backbone's features once (no augmentation; cached under
``models/classifier/``) and trains only the head on them, which is what fits on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from iris.config import Settings, TrainSettings
from iris.contract import StageContext, StageReport
from iris.errors import ConfigError
from iris.progress import bar
from iris.report.training import plot_history
from iris.train.checkpoint import classifier_dir, load_checkpoint, save_checkpoint
from iris.train.data import ImageDataset, Splits, fingerprint, split_validation, training_frame
from iris.train.heads import Classifier, HeadOnly, build_classifier, model_config
from iris.train.schedule import ScheduleParams, get_schedule, make_scheduler
from iris.workdir import Workdir

Log = Callable[[str], None]
EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult(StageReport):
    epochs: int
    """Epochs finished in total (this call and earlier ones)."""
    best_epoch: int
    val_accuracy: float | None
    """Validation accuracy of the best checkpoint (None without a validation split)."""
    val_loss: float | None
    train_images: int
    val_images: int
    resumed_from_epoch: int
    """Epochs already finished when this call started (0: a fresh start)."""
    stopped_early: bool
    device: str
    seconds: float
    seconds_per_epoch: float | None
    """Mean over the epochs run by this call (None if it ran none)."""
    checkpoint: str
    plot: str
    history: list[dict[str, Any]] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else as torch spells it.

    Raises:
        ConfigError: an unknown device or CUDA asked for but absent.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: got {name!r}, expected auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: got {name!r} but no CUDA device is available; use auto or cpu")
    return device


def check_settings(cfg: TrainSettings) -> None:
    """Reject settings that cannot train, naming the key."""
    get_schedule(cfg.schedule)
    problems = [
        (cfg.epochs >= 1, "epochs", cfg.epochs, "at least 1"),
        (cfg.batch_size >= 1, "batch_size", cfg.batch_size, "at least 1"),
        (cfg.image_size >= 16, "image_size", cfg.image_size, "at least 16"),
        (0.0 <= cfg.val_fraction < 1.0, "val_fraction", cfg.val_fraction, "in [0, 1)"),
        (cfg.patience >= 1, "patience", cfg.patience, "at least 1"),
        (cfg.model_size >= 1, "model_size", cfg.model_size, "at least 1"),
        (cfg.warmup_steps >= 1, "warmup_steps", cfg.warmup_steps, "at least 1"),
        (cfg.lr_factor > 0, "lr_factor", cfg.lr_factor, "positive"),
    ]
    for ok, key, value, expected in problems:
        if not ok:
            raise ConfigError(f"train.{key}: got {value!r}, expected {expected}")


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision (float16) on CUDA; full precision on CPU, where autocast gains nothing."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _seed_epoch(seed: int, epoch: int) -> torch.Generator:
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    losses = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def _batches(loader: DataLoader[Any], *, desc: str, total: int) -> Iterator[Any]:
    progress = bar(desc=desc, total=total, unit="img")
    for batch in loader:
        yield batch
        progress.update(len(batch[0]))
    progress.close()


def train_one_epoch(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
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
        with _autocast(device):
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
def evaluate(
    model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device
) -> tuple[float, float]:
    """Unweighted loss and accuracy (probability > 0.5) over ``batches``."""
    model.eval()
    total, correct, seen = 0.0, 0, 0
    for inputs, labels, _ in batches:
        inputs, labels = inputs.to(device), labels.to(device)
        with _autocast(device):
            logits = model(inputs).float()
        total += float(nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
        correct += int(((logits > 0).float() == labels).sum())
        seen += len(labels)
    return total / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def compute_features(
    model: Classifier, dataset: ImageDataset, *, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Backbone features (n, dim) of every image in ``dataset``, in order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    chunks = []
    for pixels, _, _ in _batches(loader, desc="train: features", total=len(dataset)):
        with _autocast(device):
            chunks.append(model.features(pixels.to(device)).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0)


def _cached_features(
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


class _TensorBatches:
    """Shuffled (features, labels, weights) batches for training the head alone."""

    def __init__(
        self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, batch: int
    ) -> None:
        self.features, self.labels, self.weights, self.batch = features, labels, weights, batch

    def __call__(self, generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, self.batch):
            index = order[start : start + self.batch]
            yield self.features[index], self.labels[index], self.weights[index]


def _fingerprint(cfg: TrainSettings, config: dict[str, Any], labels: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (epochs and patience may change)."""
    return {
        "labels": labels,
        "model": config,
        "freeze_backbone": cfg.freeze_backbone,
        "schedule": cfg.schedule,
        "warmup_steps": cfg.warmup_steps,
        "lr_factor": cfg.lr_factor,
        "backbone_lr_scale": cfg.backbone_lr_scale,
        "batch_size": cfg.batch_size,
        "val_fraction": cfg.val_fraction,
        "confidence_weighting": cfg.confidence_weighting,
        "augment": cfg.augment,
        "seed": cfg.seed,
    }


def _result(
    checkpoint: dict[str, Any], *, splits: Splits, resumed: int, device: torch.device, started: float,
    epoch_seconds: list[float], folder: Path, plot: Path,
) -> TrainResult:  # fmt: skip
    history = checkpoint["history"]
    best = next((row for row in history if row["epoch"] == checkpoint["best_epoch"]), history[-1])
    return TrainResult(
        epochs=checkpoint["epoch"],
        best_epoch=checkpoint["best_epoch"],
        val_accuracy=best.get("val_accuracy"),
        val_loss=best.get("val_loss"),
        train_images=len(splits.train),
        val_images=len(splits.val),
        resumed_from_epoch=resumed,
        stopped_early=checkpoint["stopped_early"],
        device=str(device),
        seconds=round(time.perf_counter() - started, 2),
        seconds_per_epoch=round(float(np.mean(epoch_seconds)), 2) if epoch_seconds else None,
        checkpoint=str(folder / "best.pt"),
        plot=str(plot),
        history=history,
    )


def train_workdir(
    workdir: Workdir,
    settings: Settings,
    *,
    restart: bool = False,
    log: Log | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train the final classifier on ``tables/final_labels.parquet``; resume when possible.

    Args:
        restart: ignore ``last.pt`` and train from the pretrained backbone.
        log: receives one line per epoch (and notes such as a resume).
        on_epoch: called with each epoch's metrics after its checkpoint is written.

    Returns:
        A :class:`TrainResult`; the model is ``models/classifier/best.pt`` (its ``model``
        state-dict and ``config``, see :func:`iris.train.heads.build_classifier`), the
        metrics plot ``reports/training.png``.

    Raises:
        StageOrderError: no final labels yet. ConfigError: unusable settings.
        ModelError: backbone weights missing.
    """
    started = time.perf_counter()
    cfg = settings.train
    check_settings(cfg)
    say = log or (lambda _line: None)
    folder = classifier_dir(workdir)
    plot = workdir.reports / "training.png"
    frame = training_frame(workdir)
    labels = frame["label"].to_numpy()
    train_idx, val_idx = split_validation(labels, fraction=cfg.val_fraction, seed=cfg.seed)
    splits = Splits(frame=frame, train=train_idx, val=val_idx)
    weights = splits.weights(confidence_weighting=cfg.confidence_weighting)
    device = pick_device(cfg.device)
    config = model_config(
        backbone=cfg.backbone,
        weights=cfg.weights,
        head=cfg.head,
        image_size=cfg.image_size,
        model_size=cfg.model_size,
    )
    fp = _fingerprint(cfg, config, fingerprint(frame))

    checkpoint: dict[str, Any] | None = None
    last = folder / "last.pt"
    if last.exists() and not restart:
        checkpoint = load_checkpoint(last)
        if checkpoint.get("fingerprint") != fp:
            say(f"{last}: trained on other labels or settings; starting again")
            checkpoint = None
    if checkpoint is not None and (checkpoint["stopped_early"] or checkpoint["epoch"] >= cfg.epochs):
        say(f"{last}: training already finished ({checkpoint['epoch']} epochs)")
        return _result(
            checkpoint, splits=splits, resumed=checkpoint["epoch"], device=device, started=started,
            epoch_seconds=[], folder=folder, plot=plot,
        )  # fmt: skip

    torch.manual_seed(cfg.seed)
    model = build_classifier(config, pretrained=checkpoint is None).to(device)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])

    # Inputs: pixels through the whole model, or cached features through the head alone.
    trainable: nn.Module
    if cfg.freeze_backbone:
        for parameter in model.net.parameters():
            parameter.requires_grad_(False)
        features = _cached_features(model, splits, cfg, config, folder, device)
        trainable = HeadOnly(model.head)
        groups = [{"params": list(model.head.parameters())}]
        scales = [1.0]
        label_t = torch.tensor(labels, dtype=torch.float32)
        weight_t = torch.tensor(weights, dtype=torch.float32)
        train_source = _TensorBatches(
            features[train_idx], label_t[train_idx], weight_t[train_idx], cfg.batch_size
        )
        val_source = _TensorBatches(features[val_idx], label_t[val_idx], weight_t[val_idx], cfg.batch_size)
        steps_per_epoch = -(-len(train_idx) // cfg.batch_size)

        def train_batches(generator: torch.Generator) -> Iterator[Any]:
            return train_source(generator)

        def val_batches() -> Iterator[Any]:
            return val_source(None)
    else:
        trainable = model
        groups = [{"params": list(model.net.parameters())}, {"params": list(model.head.parameters())}]
        scales = [cfg.backbone_lr_scale, 1.0]
        paths = frame["path"].to_list()
        train_set = ImageDataset(
            [paths[i] for i in train_idx], labels[train_idx], weights[train_idx],
            image_size=cfg.image_size, augment=cfg.augment,
        )  # fmt: skip
        val_set = ImageDataset(
            [paths[i] for i in val_idx], labels[val_idx], weights[val_idx],
            image_size=cfg.image_size, augment=False,
        )  # fmt: skip
        # A last batch of one image would break BatchNorm's training statistics.
        drop_last = len(train_set) > cfg.batch_size and len(train_set) % cfg.batch_size == 1
        steps_per_epoch = (
            len(train_set) // cfg.batch_size if drop_last else -(-len(train_set) // cfg.batch_size)
        )

        def train_batches(generator: torch.Generator) -> Iterator[Any]:
            loader = DataLoader(
                train_set, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                num_workers=cfg.workers, drop_last=drop_last,
            )  # fmt: skip
            return _batches(loader, desc="train: epoch", total=len(train_set))

        def val_batches() -> Iterator[Any]:
            loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers)
            return _batches(loader, desc="train: validate", total=len(val_set))

    optimizer = torch.optim.AdamW(groups, lr=1.0, weight_decay=1e-4)
    total_steps = max(steps_per_epoch * cfg.epochs, 1)
    # A warmup longer than the run would never reach the peak (e.g. 200 warmup steps on a
    # few hundred images): cap it at half the planned steps.
    warmup = min(cfg.warmup_steps, max(1, total_steps // 2))
    if warmup < cfg.warmup_steps and checkpoint is None:
        say(f"warmup_steps {cfg.warmup_steps} capped to {warmup}: half of the {total_steps} planned steps")
    params = ScheduleParams(factor=cfg.lr_factor, model_size=cfg.model_size, warmup=warmup, total=total_steps)
    scheduler = make_scheduler(optimizer, cfg.schedule, params, scales=scales)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        say(f"resuming after epoch {checkpoint['epoch']} of {cfg.epochs} from {last}")
    state: dict[str, Any] = checkpoint or {
        "epoch": 0,
        "best_epoch": 0,
        "best_metric": None,
        "stale_epochs": 0,
        "stopped_early": False,
        "history": [],
    }
    resumed = state["epoch"]
    epoch_seconds: list[float] = []
    for epoch in range(state["epoch"], cfg.epochs):
        epoch_start = time.perf_counter()
        generator = _seed_epoch(cfg.seed, epoch)
        train_loss = train_one_epoch(
            trainable, train_batches(generator), optimizer, scheduler, scaler, device
        )
        val_loss: float | None = None
        val_accuracy: float | None = None
        if len(val_idx):
            val_loss, val_accuracy = evaluate(trainable, val_batches(), device)
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
        # Best = highest validation accuracy, ties to the lower loss; without a validation
        # split every epoch is the best so far.
        metric = (val_accuracy, -val_loss) if val_accuracy is not None and val_loss is not None else None
        improved = (
            metric is None or state["best_metric"] is None or tuple(metric) > tuple(state["best_metric"])
        )
        state["history"].append(row)
        state["epoch"] = epoch + 1
        state["stale_epochs"] = 0 if improved else state["stale_epochs"] + 1
        state["stopped_early"] = metric is not None and state["stale_epochs"] >= cfg.patience
        model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if improved:
            state["best_epoch"] = epoch + 1
            state["best_metric"] = None if metric is None else list(metric)
            save_checkpoint(
                {"model": model_state, "config": config, "epoch": epoch + 1, "metrics": row},
                folder / "best.pt",
            )
        state.update(
            model=model_state,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            fingerprint=fp,
            config=config,
        )
        save_checkpoint(state, last)
        plot_history(state["history"], plot)
        say(
            f"epoch {epoch + 1}/{cfg.epochs}  train_loss {train_loss:.4f}  "
            + (f"val_loss {val_loss:.4f}  val_acc {val_accuracy:.4f}  " if val_loss is not None else "")
            + f"lr {row['lr']:.2e}  {seconds:.1f} s"
            + ("  (best)" if improved else "")
        )
        if on_epoch is not None:
            on_epoch(row)
        if state["stopped_early"]:
            say(f"no improvement for {cfg.patience} epoch(s): stopping early")
            break
    return _result(
        state, splits=splits, resumed=resumed, device=device, started=started,
        epoch_seconds=epoch_seconds, folder=folder, plot=plot,
    )  # fmt: skip


def run(ctx: StageContext) -> TrainResult:
    """The train stage; ``ctx.options["restart"]`` ignores the last checkpoint."""
    return train_workdir(ctx.workdir, ctx.settings, restart=bool(ctx.options.get("restart")), log=ctx.echo)
