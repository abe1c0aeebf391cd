"""The crowd rounds of a run, from ``tables/rounds``: a markdown table and a curve.

The curve (``reports/rounds.png``) shows, against the share of the pool bought so far,
the audit's estimate of the automatic labels' accuracy with its 95% interval, and the
lower bound of the whole dataset's expected accuracy that the loop stops on, next to the
target.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from iris import tables
from iris.rounds.audit import STOP_REASONS
from iris.workdir import Workdir

CURVE_FILE = "rounds.png"
COLUMNS = ("round", "picked", "audited", "bought", "share", "cost", "audit", "expected_low", "stop")


def read_rounds(workdir: Workdir) -> pl.DataFrame | None:
    """``tables/rounds``, or None when the crowd did not run in rounds."""
    path = workdir.table("rounds")
    return tables.read(path, tables.ROUNDS) if path.exists() else None


def _interval(row: dict[str, object]) -> str:
    if row["audit_low"] is None:
        return f"no estimate ({row['audit_n']} answered)"
    return (
        f"{row['audit_accuracy']:.3f} [{row['audit_low']:.3f}, {row['audit_high']:.3f}] of {row['audit_n']}"
    )


def rounds_markdown(rounds: pl.DataFrame) -> list[str]:
    """One table row per round (rounds counted from 1, as the run's log does)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * (len(COLUMNS) - 1) + "---|"]
    for row in rounds.iter_rows(named=True):
        expected = "" if row["expected_low"] is None else f"{row['expected_low']:.3f}"
        stop = f"stop: {STOP_REASONS.get(row['reason'], row['reason'])}" if row["stop"] else "go on"
        cells = [
            row["round"] + 1, row["picked"], row["audited"], row["bought"], f"{row['share']:.1%}",
            f"{row['cost']:.2f}", _interval(row), expected, stop,
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def draw_rounds(rounds: pl.DataFrame, path: Path, *, target: float) -> Path:
    """The audit's estimate (with its interval) and the expected accuracy's lower bound
    against the pool share bought, one point per round."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    est = rounds.filter(pl.col("audit_low").is_not_null())
    share = (est["share"] * 100).to_list()
    acc = est["audit_accuracy"].to_list()
    low = [a - lo for a, lo in zip(acc, est["audit_low"].to_list(), strict=True)]
    high = [hi - a for a, hi in zip(acc, est["audit_high"].to_list(), strict=True)]
    ax.errorbar(share, acc, yerr=[low, high], marker="o", capsize=4, label="automatic labels (audit, 95%)")
    expected = rounds.filter(pl.col("expected_low").is_not_null())
    ax.plot(
        (expected["share"] * 100).to_list(),
        expected["expected_low"].to_list(),
        marker="s",
        ls="--",
        label="whole dataset, lower bound",
    )
    ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target:.2f}")
    for row in rounds.iter_rows(named=True):
        ax.annotate(str(row["round"] + 1), (row["share"] * 100, row["audit_accuracy"] or target), fontsize=8,
                    xytext=(4, -10), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("pool bought from the crowd so far (%, audit included)")
    ax.set_ylabel("estimated accuracy")
    ax.set_title(f"crowd rounds ({rounds.height})")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["COLUMNS", "CURVE_FILE", "draw_rounds", "read_rounds", "rounds_markdown"]
