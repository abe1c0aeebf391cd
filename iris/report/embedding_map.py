"""``reports/embedding_map.png``: a 2-D t-SNE map of the embeddings, by status and by label.

t-SNE is quadratic-ish in the number of points, so the map draws every labeled image plus
a seeded random sample of the pool, ``n_points`` in all (PCA to 50 dimensions first, as
scikit-learn's documentation advises; 500 iterations, which settle a map of 2,000 points).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from iris.config import Settings
from iris.pseudolabel.kmeans import normalise
from iris.stagekit import Points, Stopwatch, read_points
from iris.store.base import VectorStore
from iris.tables import PSEUDOLABELS, SHORTLIST, Status, read
from iris.workdir import Workdir

MAP_FILE = "embedding_map.png"
LABELED = "labeled"
STATUS_COLOURS = {
    LABELED: "#222222",
    Status.AUTO.value: "#9ecae1",
    Status.NEIGHBOUR.value: "#fdae6b",
    Status.PROBLEMATIC.value: "#d62728",
}
LABEL_COLOURS = {"0": "#1f77b4", "1": "#ff7f0e", "unknown": "#cccccc"}


def tsne_2d(vectors: npt.NDArray[np.float32], *, seed: int) -> npt.NDArray[np.float64]:
    """2-D t-SNE coordinates (n, 2) of ``vectors`` (n, dim), PCA-reduced to 50 dimensions first."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    data = normalise(vectors)
    perplexity = float(min(30.0, max(2.0, (len(data) - 1) / 3)))
    # One thread: t-SNE's OpenMP loops are short and synchronise often, and on a shared
    # 2-core machine they ran 4x slower with two threads than with one (11 s vs 49 s).
    with threadpool_limits(limits=1):
        if data.shape[1] > 50 and len(data) > 50:
            data = PCA(n_components=50, random_state=seed).fit_transform(data).astype(np.float32)
        coords = TSNE(
            n_components=2, init="pca", perplexity=perplexity, max_iter=500, random_state=seed
        ).fit_transform(data)
    return np.asarray(coords, dtype=np.float64)


def draw_embedding_map(
    workdir: Workdir,
    points: Points,
    pseudolabels: pl.DataFrame,
    shortlist: pl.DataFrame,
    *,
    n_points: int = 2000,
    seed: int = 0,
    class_names: tuple[str, str] = ("0", "1"),
) -> Path:
    """Draw the map of labeled and pool images and write it to ``reports/embedding_map.png``.

    Args:
        points: the store's points (:func:`iris.stagekit.read_points`).
        pseudolabels: ``PSEUDOLABELS`` rows (id, auto_label, status).
        shortlist: ``SHORTLIST`` rows (id, reason).
        n_points: points drawn at most.
        class_names: names of labels 0 and 1 for the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = points.exported.ids
    status = np.full(len(ids), "", dtype=object)
    label = np.full(len(ids), "unknown", dtype=object)
    status[points.labeled] = LABELED
    label[points.labeled] = points.labels[points.labeled].astype(str)
    row_of = {int(i): r for r, i in enumerate(ids.tolist())}
    for i, st, auto in pseudolabels.select("id", "status", "auto_label").iter_rows():
        row = row_of.get(int(i))
        if row is not None:
            status[row] = st
            label[row] = "unknown" if auto is None else str(auto)
    for i, reason in shortlist.select("id", "reason").iter_rows():
        row = row_of.get(int(i))
        if row is not None and reason == Status.NEIGHBOUR.value:
            status[row] = Status.NEIGHBOUR.value

    rng = np.random.default_rng(seed)
    labeled_rows = np.flatnonzero(status == LABELED)
    other_rows = np.flatnonzero((status != LABELED) & (status != ""))
    room = max(0, n_points - len(labeled_rows))
    sample = rng.choice(other_rows, size=min(room, len(other_rows)), replace=False)
    rows = np.sort(np.concatenate([labeled_rows[:n_points], sample]).astype(np.int64))
    xy = tsne_2d(points.exported.vectors[rows], seed=seed) if len(rows) > 3 else np.zeros((len(rows), 2))

    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5))
    for ax, values, colours, title in (
        (axes[0], status[rows], STATUS_COLOURS, "status"),
        (axes[1], label[rows], LABEL_COLOURS, "label (ground truth or automatic)"),
    ):
        for name, colour in colours.items():
            mask = values == name
            if not mask.any():
                continue
            # Labeled images are drawn last and larger so the seeds stay visible.
            big = status[rows] == LABELED
            shown = class_names[int(name)] if name in {"0", "1"} else name
            legend: str | None = f"{shown} ({int(mask.sum())})"
            for subset, size, z in ((mask & ~big, 6, 1), (mask & big, 22, 3)):
                if subset.any():
                    ax.scatter(
                        xy[subset, 0],
                        xy[subset, 1],
                        s=size,
                        c=colour,
                        zorder=z,
                        label=legend,
                        edgecolors="black" if size == 22 else "none",
                        linewidths=0.3,
                    )
                    legend = None
        ax.set_title(f"t-SNE of {len(rows)} embeddings, by {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8, markerscale=2)
    fig.tight_layout()
    path = workdir.reports / MAP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def embedding_map(workdir: Workdir, settings: Settings, store: VectorStore) -> Path | None:
    """Draw ``reports/embedding_map.png`` from the store and the pseudolabel and select tables.

    Returns None (and draws nothing) when ``select.map_points`` is 0.

    Raises:
        StageOrderError: the pseudolabels or shortlist table does not exist yet.
    """
    if settings.select.map_points <= 0:
        return None
    pseudolabels = read(workdir.table("pseudolabels"), PSEUDOLABELS)
    shortlist = read(workdir.table("shortlist"), SHORTLIST)
    points = read_points(store, Stopwatch())
    pool_ids = points.exported.ids[points.pool].tolist()
    return draw_embedding_map(
        workdir,
        points,
        pseudolabels.filter(pl.col("id").is_in(pool_ids)).sort("id"),
        shortlist,
        n_points=settings.select.map_points,
        seed=settings.pseudolabel.seed,
        class_names=(settings.task.negative_name, settings.task.positive_name),
    )
