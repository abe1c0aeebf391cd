"""Per-epoch training metrics drawn as a PNG (loss, validation accuracy, learning rate)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from iris.train.fit import EpochEnd


def plot_history(history: Sequence[Mapping[str, float | None]], path: Path) -> Path:
    """Draw ``history`` (one mapping per epoch: epoch, train_loss, val_loss, val_accuracy, lr).

    Written atomically (temporary file, then rename), like every iris output.
    """
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(12, 3.5))
    loss_ax.plot(epochs, [row.get("train_loss") for row in history], "o-", label="train")
    if any(row.get("val_loss") is not None for row in history):
        loss_ax.plot(epochs, [row.get("val_loss") for row in history], "o-", label="validation")
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend()
    acc_ax.plot(epochs, [row.get("val_accuracy") for row in history], "o-", color="tab:green")
    acc_ax.set(title="validation accuracy", xlabel="epoch")
    lr_ax.plot(epochs, [row.get("lr") for row in history], "o-", color="tab:gray")
    lr_ax.set(title="learning rate (end of epoch)", xlabel="epoch")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


class TrainingPlot:
    """Epoch hook for :func:`iris.train.loop.train_workdir`: redraws ``path`` after every epoch
    from the whole history (a resumed run's earlier epochs included)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, end: EpochEnd) -> None:
        plot_history(end.history, self.path)
