"""Resume: what a checkpoint must match to be continued, and the training state it carries.

``models/classifier/last.pt`` is written after every epoch (:func:`save_epoch`): the model,
optimizer, scheduler and scaler states plus a :class:`TrainState`-shaped dict (epoch, best
epoch and metric, stale epochs, early stop, history) and the :func:`fingerprint` of the
labeled set and settings. A re-run continues after its last finished epoch only when the
fingerprint matches (:func:`load_resumable`); epochs and patience may change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from iris.config import TrainSettings
from iris.train.checkpoint import load_checkpoint, save_checkpoint

Log = Callable[[str], None]


def fingerprint(cfg: TrainSettings, config: dict[str, Any], labels: str) -> dict[str, Any]:
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


def fresh_state() -> dict[str, Any]:
    """The training state before the first epoch."""
    return {
        "epoch": 0,
        "best_epoch": 0,
        "best_metric": None,
        "stale_epochs": 0,
        "stopped_early": False,
        "history": [],
    }


def load_resumable(last: Path, fp: dict[str, Any], *, restart: bool, say: Log) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None to start afresh (none, ``restart``, or one
    trained on other labels or settings)."""
    if restart or not last.exists():
        return None
    checkpoint = load_checkpoint(last)
    if checkpoint.get("fingerprint") != fp:
        say(f"{last}: trained on other labels or settings; starting again")
        return None
    return checkpoint


def is_finished(checkpoint: dict[str, Any], epochs: int) -> bool:
    """Whether the checkpoint's run stopped early or reached ``epochs``."""
    return bool(checkpoint["stopped_early"] or checkpoint["epoch"] >= epochs)


def restore(checkpoint: dict[str, Any], *, optimizer: Any, scheduler: Any, scaler: Any) -> None:
    """Load the optimizer, scheduler and scaler states of ``checkpoint`` (the model's state is
    loaded before the input source is built)."""
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])


def save_epoch(
    state: dict[str, Any],
    *,
    folder: Path,
    improved: bool,
    row: dict[str, Any],
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    fp: dict[str, Any],
    config: dict[str, Any],
) -> None:
    """Write ``best.pt`` when the epoch improved, then ``last.pt`` (each atomically)."""
    model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if improved:
        save_checkpoint(
            {"model": model_state, "config": config, "epoch": row["epoch"], "metrics": row},
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
    save_checkpoint(state, folder / "last.pt")
