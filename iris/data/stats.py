"""``iris data stats``: what was ingested, as tables and one PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from iris import tables
from iris.config import TaskSettings
from iris.workdir import Workdir

SPLIT_ORDER = ("gt", "pool", "test")


@dataclass(frozen=True)
class DataStats:
    """Summary of the images and rejects tables."""

    counts: list[dict[str, Any]]
    """One row per split and label: ``split``, ``label`` (class name or "unlabeled"), ``images``."""
    sizes: list[dict[str, Any]]
    """One row per split: ``split``, ``images``, min/median/max ``width`` and ``height``,
    and the most common size ``common`` (``WxH``) with its share ``common_share``."""
    rejects: list[dict[str, Any]]
    """One row per reason: ``reason``, ``rows``, an ``example`` detail."""


def _label_name(label: int | None, task: TaskSettings) -> str:
    if label is None:
        return "unlabeled"
    return task.positive_name if label == 1 else task.negative_name


def compute_stats(images: pl.DataFrame, rejects: pl.DataFrame, *, task: TaskSettings) -> DataStats:
    """Summarise an images table (``tables.IMAGES``) and a rejects table (``tables.REJECTS``)."""
    images = tables.check(images, tables.IMAGES, where="images table")
    rejects = tables.check(rejects, tables.REJECTS, where="rejects table")
    order = {split: i for i, split in enumerate(SPLIT_ORDER)}
    grouped = images.group_by("split", "label").len().rows(named=True)
    grouped.sort(key=lambda r: (order.get(r["split"], 9), r["label"] is None, -(r["label"] or 0)))
    counts = [
        {"split": r["split"], "label": _label_name(r["label"], task), "images": r["len"]} for r in grouped
    ]
    sizes = []
    for split in sorted(set(images["split"].to_list()), key=lambda s: order.get(s, 9)):
        part = images.filter(pl.col("split") == split)
        common = (
            part.group_by("width", "height")
            .len()
            .sort(["len", "width", "height"], descending=[True, False, False])
        )
        top = common.row(0, named=True)
        sizes.append(
            {
                "split": split,
                "images": part.height,
                "width_min": part["width"].min(),
                "width_median": part["width"].median(),
                "width_max": part["width"].max(),
                "height_min": part["height"].min(),
                "height_median": part["height"].median(),
                "height_max": part["height"].max(),
                "common": f"{top['width']}x{top['height']}",
                "common_share": top["len"] / part.height,
            }
        )
    reasons = (
        rejects.group_by("reason")
        .agg(pl.len().alias("rows"), pl.col("detail").first().alias("example"))
        .sort(["rows", "reason"], descending=[True, False])
    )
    return DataStats(counts=counts, sizes=sizes, rejects=reasons.rows(named=True))


def plot_stats(stats: DataStats, images: pl.DataFrame, path: Path) -> Path:
    """Draw counts per split and label, the size distribution and rejects by reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_counts, ax_sizes, ax_rejects) = plt.subplots(1, 3, figsize=(15, 4.5))
    splits = [s for s in SPLIT_ORDER if any(r["split"] == s for r in stats.counts)]
    labels = sorted({r["label"] for r in stats.counts}, key=lambda name: name == "unlabeled")
    bottom = [0] * len(splits)
    for label in labels:
        heights = [
            sum(r["images"] for r in stats.counts if r["split"] == s and r["label"] == label) for s in splits
        ]
        ax_counts.bar(splits, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, total in enumerate(bottom):
        ax_counts.annotate(str(total), (x, total), ha="center", va="bottom", fontsize=9)
    ax_counts.set_title("images per split and label")
    ax_counts.set_ylabel("images")
    if labels:
        ax_counts.legend()

    if images.height:
        sizes = images.group_by("width", "height").len()
        ax_sizes.scatter(
            sizes["width"].to_list(),
            sizes["height"].to_list(),
            s=[20 + 300 * n / sizes["len"].max() for n in sizes["len"].to_list()],
            alpha=0.6,
        )
        for width, height, n in sizes.sort("len", descending=True).head(5).iter_rows():
            ax_sizes.annotate(f"{width}x{height}: {n}", (width, height), fontsize=8)
    ax_sizes.set_title("image sizes (area ~ count)")
    ax_sizes.set_xlabel("width, px")
    ax_sizes.set_ylabel("height, px")

    if stats.rejects:
        reasons = [r["reason"] for r in stats.rejects][::-1]
        ax_rejects.barh(reasons, [r["rows"] for r in stats.rejects][::-1], color="tab:red")
        ax_rejects.set_xlabel("rows")
    else:
        ax_rejects.text(0.5, 0.5, "no rejects", ha="center", va="center", transform=ax_rejects.transAxes)
        ax_rejects.set_xticks([])
        ax_rejects.set_yticks([])
    ax_rejects.set_title("rejected rows by reason")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def data_stats(workdir: Workdir, *, task: TaskSettings) -> tuple[DataStats, Path]:
    """Summarise the work directory's ingest and draw ``reports/data_stats.png``.

    Raises:
        StageOrderError: ingest has not run yet.
    """
    images = tables.read(workdir.table("images"), tables.IMAGES)
    rejects = tables.read(workdir.table("rejects"), tables.REJECTS)
    stats = compute_stats(images, rejects, task=task)
    return stats, plot_stats(stats, images, workdir.reports / "data_stats.png")
