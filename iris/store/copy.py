"""Move a collection between stores: embedded → server, and a portable archive.

``copy_store`` is how a user who started with the embedded store moves to a Qdrant
server without re-embedding: vectors and payloads are scrolled out of one store in id
order and upserted into the other in batches (idempotent, so an interrupted copy is
simply run again).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from iris.errors import DimensionError, InputError, StageOrderError
from iris.progress import bar
from iris.store.base import Exported, VectorStore

if TYPE_CHECKING:
    from iris.workdir import Workdir


@dataclass(frozen=True)
class CopyReport:
    """What ``copy_store`` did."""

    copied: int
    """Points read from the source and upserted into the target."""
    target_count: int
    """Points in the target collection afterwards."""
    dim: int
    distance: str


def copy_store(source: VectorStore, target: VectorStore, *, batch: int = 512) -> CopyReport:
    """Copy every point (vector and payload) of ``source`` into ``target``.

    The target collection is created with the source's size and distance, or checked
    against them when it exists (points with the same ids are replaced).

    Raises:
        StageOrderError: the source collection does not exist.
        DimensionError: the target collection exists with another size or distance.
    """
    dim, distance = source.dimension(), source.distance()
    if dim is None or distance is None:
        raise StageOrderError("the source collection does not exist yet; run `iris embed` first")
    target.ensure_collection(dim=dim, distance=distance)
    total = source.count()
    copied = 0
    progress = bar(desc="copy points", total=total, unit="pt")
    try:
        for part in source.scroll(batch=batch, with_vectors=True):
            target.upsert(part.ids, part.vectors, part.payloads)
            copied += len(part.ids)
            progress.update(len(part.ids))
    finally:
        progress.close()
    return CopyReport(copied=copied, target_count=target.count(), dim=dim, distance=distance)


ARCHIVE_VERSION = 1


def write_archive(store: VectorStore, path: Path) -> Path:
    """Write every point of ``store`` to a portable ``.npz`` (ids, vectors, payloads as JSON).

    Raises:
        StageOrderError: the collection does not exist.
    """
    dim, distance = store.dimension(), store.distance()
    if dim is None or distance is None:
        raise StageOrderError("the collection does not exist yet; run `iris embed` first")
    exported = store.export()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        ids=exported.ids,
        vectors=exported.vectors,
        payloads=np.array(json.dumps(exported.payloads)),
        meta=np.array(json.dumps({"version": ARCHIVE_VERSION, "dim": dim, "distance": distance})),
    )
    os.replace(tmp, path)
    return path


def read_archive(path: Path) -> tuple[Exported, str]:
    """Read an archive written by :func:`write_archive`; returns the points and their distance.

    Raises:
        InputError: the file is not such an archive.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            exported = Exported(
                ids=data["ids"].astype(np.int64),
                vectors=data["vectors"].astype(np.float32),
                payloads=json.loads(str(data["payloads"])),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not an iris store archive ({exc})") from None
    if exported.vectors.shape[1:] != (meta["dim"],):
        shape = exported.vectors.shape
        raise DimensionError(f"{path}: vectors have shape {shape}, the archive says dim {meta['dim']}")
    return exported, str(meta["distance"])


def describe(store: VectorStore, workdir: Workdir | None = None) -> dict[str, Any]:
    """What ``iris store info`` shows: kind, where, collection, size, points per split/status/origin.

    Statuses come from ``workdir``'s tables when it has them (:mod:`iris.statuses`), else
    from the payload (the status each point entered the store with).
    """
    from iris.statuses import counts
    from iris.store.base import Filter
    from iris.vocabulary import ORIGINS, SPLITS, STATUSES

    points = store.count()
    by_split = {s: store.count(Filter(must={"split": s})) for s in SPLITS} if points else {}
    by_status = (counts(workdir) if workdir is not None and points else None) or {}
    if points and not by_status:
        by_status = {s: store.count(Filter(must={"status": s})) for s in STATUSES}
        by_status["(none)"] = store.count(Filter(must={"status": None}))
    by_origin = {o: store.count(Filter(must={"origin": o})) for o in ORIGINS} if points else {}
    layout_of = getattr(store, "layout", None)
    # The embedded store is one shard with one copy; a server says what its collection has.
    layout = layout_of() if callable(layout_of) else {}
    if not layout and store.dimension() is not None:
        layout = {"shards": 1, "replication_factor": 1, "write_consistency": 1, "replicas": None}
    return {
        "kind": store.kind,
        "location": str(getattr(store, "location", "") or getattr(store, "path", "")),
        "collection": getattr(store, "collection", ""),
        "points": points,
        "dim": store.dimension(),
        "distance": store.distance(),
        "by_split": {k: v for k, v in by_split.items() if v},
        "by_status": {k: v for k, v in by_status.items() if v},
        "by_origin": {k: v for k, v in by_origin.items() if v},
        "shards": layout.get("shards"),
        "replication_factor": layout.get("replication_factor"),
        "write_consistency": layout.get("write_consistency"),
        "replicas": layout.get("replicas"),
    }
