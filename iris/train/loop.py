"""Final training: backbone + head on the final labels, with checkpoints and resume.

:func:`train_workdir` is a thin sequence over three parts:

* resume (:mod:`iris.train.resume`, :mod:`iris.train.checkpoint`): ``models/classifier/last.pt``
  is written after every epoch and ``best.pt`` whenever validation improves, each to a
  temporary file renamed into place, so a SIGKILL leaves the previous checkpoint intact. A
  re-run resumes after the last finished epoch, provided the labeled set and settings are
  the ones ``last.pt`` was trained with;
* the input source (:mod:`iris.train.inputs`): fine-tuning on images, or the head alone on
  frozen backbone features (computed once and cached);
* fit (:mod:`iris.train.fit`): the epoch loop, reseeded per epoch, with epoch hooks.

Nothing here draws: the metrics plot is an epoch hook of :mod:`iris.report.training`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from iris.config import Settings
from iris.contract import StageContext, StageReport
from iris.errors import ConfigError
from iris.train import resume
from iris.train.checkpoint import classifier_dir, load_checkpoint, save_checkpoint
from iris.train.data import Splits, fingerprint, split_validation, training_frame
from iris.train.fit import EpochEnd, EpochHook, fit
from iris.train.heads import build_classifier, model_config
from iris.train.inputs import input_source
from iris.train.schedule import ScheduleParams, make_scheduler
from iris.workdir import Workdir

__all__ = [
    "EpochEnd",
    "EpochHook",
    "TrainResult",
    "classifier_dir",
    "load_checkpoint",
    "pick_device",
    "save_checkpoint",
    "train_workdir",
]

Log = Callable[[str], None]


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
    """The metrics plot a hook drew (``reports/training.png``), empty when none did."""
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


def _result(
    checkpoint: dict[str, Any], *, splits: Splits, resumed: int, device: torch.device, started: float,
    epoch_seconds: list[float], best: str, plot: str,
) -> TrainResult:  # fmt: skip
    history = checkpoint["history"]
    best_row = next((row for row in history if row["epoch"] == checkpoint["best_epoch"]), history[-1])
    return TrainResult(
        epochs=checkpoint["epoch"],
        best_epoch=checkpoint["best_epoch"],
        val_accuracy=best_row.get("val_accuracy"),
        val_loss=best_row.get("val_loss"),
        train_images=len(splits.train),
        val_images=len(splits.val),
        resumed_from_epoch=resumed,
        stopped_early=checkpoint["stopped_early"],
        device=str(device),
        seconds=round(time.perf_counter() - started, 2),
        seconds_per_epoch=round(float(np.mean(epoch_seconds)), 2) if epoch_seconds else None,
        checkpoint=best,
        plot=plot,
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
        on_epoch: called with each epoch's :class:`~iris.train.fit.EpochEnd` after its
            checkpoint is written.
            The run report's picture is such a hook (:class:`iris.report.training.TrainingPlot`),
            passed by the caller: nothing under ``iris/train`` draws.

    Returns:
        A :class:`TrainResult`; the model is ``models/classifier/best.pt`` (its ``model``
        state-dict and ``config``, see :func:`iris.train.heads.build_classifier`).

    Raises:
        StageOrderError: no final labels yet. ConfigError: unusable settings.
        ModelError: backbone weights missing.
    """
    started = time.perf_counter()
    cfg = settings.train
    say = log or (lambda _line: None)
    folder = classifier_dir(workdir)
    frame = training_frame(workdir)
    train_idx, val_idx = split_validation(frame["label"].to_numpy(), fraction=cfg.val_fraction, seed=cfg.seed)
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
    fp = resume.fingerprint(cfg, config, fingerprint(frame))
    last = folder / "last.pt"
    hooks = [on_epoch] if on_epoch is not None else []
    plot_path = str(getattr(on_epoch, "path", ""))

    checkpoint = resume.load_resumable(last, fp, restart=restart, say=say)
    if checkpoint is not None and resume.is_finished(checkpoint, cfg.epochs):
        say(f"{last}: training already finished ({checkpoint['epoch']} epochs)")
        return _result(
            checkpoint, splits=splits, resumed=checkpoint["epoch"], device=device, started=started,
            epoch_seconds=[], best=str(folder / "best.pt"), plot=plot_path,
        )  # fmt: skip

    torch.manual_seed(cfg.seed)
    model = build_classifier(config, pretrained=checkpoint is None).to(device)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    source = input_source(model, splits, weights, cfg=cfg, config=config, folder=folder, device=device)

    optimizer = torch.optim.AdamW(source.groups, lr=1.0, weight_decay=1e-4)
    total_steps = max(source.steps_per_epoch * cfg.epochs, 1)
    # A warmup longer than the run would never reach the peak (e.g. 200 warmup steps on a
    # few hundred images): cap it at half the planned steps.
    warmup = min(cfg.warmup_steps, max(1, total_steps // 2))
    if warmup < cfg.warmup_steps and checkpoint is None:
        say(f"warmup_steps {cfg.warmup_steps} capped to {warmup}: half of the {total_steps} planned steps")
    params = ScheduleParams(factor=cfg.lr_factor, model_size=cfg.model_size, warmup=warmup, total=total_steps)
    scheduler = make_scheduler(optimizer, cfg.schedule, params, scales=source.scales)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    if checkpoint is not None:
        resume.restore(checkpoint, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        say(f"resuming after epoch {checkpoint['epoch']} of {cfg.epochs} from {last}")
    state = checkpoint or resume.fresh_state()
    resumed = state["epoch"]

    def write_checkpoints(row: dict[str, Any], improved: bool) -> None:
        resume.save_epoch(
            state, folder=folder, improved=improved, row=row, model=model, optimizer=optimizer,
            scheduler=scheduler, scaler=scaler, fp=fp, config=config,
        )  # fmt: skip

    epoch_seconds = fit(
        source, state, cfg=cfg, optimizer=optimizer, scheduler=scheduler, scaler=scaler, device=device,
        validate=len(val_idx) > 0, checkpoint=write_checkpoints, say=say, hooks=hooks,
    )  # fmt: skip
    return _result(
        state, splits=splits, resumed=resumed, device=device, started=started,
        epoch_seconds=epoch_seconds, best=str(folder / "best.pt"), plot=plot_path,
    )  # fmt: skip


def run(ctx: StageContext) -> TrainResult:
    """The train stage; ``ctx.options["restart"]`` ignores the last checkpoint and
    ``ctx.options["on_epoch"]`` (an :data:`~iris.train.fit.EpochHook`) sees every epoch."""
    return train_workdir(
        ctx.workdir,
        ctx.settings,
        restart=bool(ctx.options.get("restart")),
        log=ctx.echo,
        on_epoch=ctx.options.get("on_epoch"),
    )
