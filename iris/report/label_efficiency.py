"""The label-efficiency curve: final-label accuracy against the share of the pool sent to the crowd."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Curve = Sequence[tuple[float, float, float]]
"""Points (crowd share, mean label accuracy, spread) in the order to join them."""


def draw_label_efficiency(
    panels: Mapping[str, Mapping[str, Curve]], path: Path, *, title: str = "label efficiency"
) -> Path:
    """One panel per task, one line per strategy (a single point when a strategy has one).

    Args:
        panels: task name → strategy name → points (share, accuracy, spread); the spread is
            drawn as an error bar (e.g. the standard deviation over seeds).
        path: the PNG to write.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, (task, curves) in zip(axes[0], panels.items(), strict=True):
        for name, points in curves.items():
            pts = sorted(points)
            xs = [100 * p[0] for p in pts]
            ys = [p[1] for p in pts]
            err = [p[2] for p in pts]
            style = "o" if len(pts) == 1 else "o-"
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=name, markersize=4)
        ax.set_xlabel("pool sent to the crowd (%, audit included)")
        ax.set_ylabel("final labels correct")
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
