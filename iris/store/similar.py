"""Ad-hoc similarity: the nearest images of one image in the store or of a new picture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from iris.errors import StoreError
from iris.store.base import Filter, Hit, Payload, VectorStore

if TYPE_CHECKING:
    from iris.workdir import Workdir


@dataclass(frozen=True)
class Similar:
    """A query and its neighbours, best first."""

    query_id: int | None
    """The queried point, or None for a picture from outside the store."""
    query_payload: Payload
    hits: list[Hit]


def similar_filter(
    *,
    splits: tuple[str, ...] = (),
    statuses: tuple[str, ...] = (),
    origins: tuple[str, ...] = (),
    label: int | None = None,
    ids: frozenset[int] | None = None,
) -> Filter | None:
    """The filter of ``iris similar``'s options (empty options add no condition).

    ``statuses`` filter on the payload's status; a status that lives in the tables comes
    as ``ids`` instead (:func:`iris.statuses.status_filter`).
    """
    must: dict[str, Any] = {}
    if splits:
        must["split"] = list(splits)
    if statuses:
        must["status"] = list(statuses)
    if origins:
        must["origin"] = list(origins)
    if label is not None:
        must["label"] = int(label)
    return Filter(must=must, ids=ids) if must or ids is not None else None


def find_similar(
    store: VectorStore,
    *,
    point_id: int | None = None,
    vector: npt.NDArray[np.float32] | None = None,
    k: int = 10,
    flt: Filter | None = None,
    exact: bool = False,
) -> Similar:
    """The ``k`` nearest points of a stored point (itself left out) or of a vector.

    Raises:
        StoreError: the id is not in the store, or neither/both of id and vector are given.
    """
    if (point_id is None) == (vector is None):
        raise StoreError("similar: give exactly one of a point id or a query vector")
    payload: Payload = {}
    if point_id is not None:
        found = store.retrieve([point_id], with_vectors=True)
        if not found:
            raise StoreError(
                f"similar: no point with id {point_id} in the store "
                "(ids are the `id` column of tables/images.parquet)"
            )
        _, payload, vector = found[0]
    assert vector is not None
    hits = store.query_batch(np.asarray(vector, np.float32)[None, :], k=k + 1, flt=flt, exact=exact)[0]
    hits = [h for h in hits if h.id != point_id][:k]
    return Similar(query_id=point_id, query_payload=payload, hits=hits)


def image_paths(workdir: Workdir, ids: list[int]) -> dict[int, Path]:
    """Local files of ``ids`` from the images table (empty when ``iris ingest`` has not run)."""
    table = workdir.table("images")
    if not table.exists():
        return {}
    import polars as pl

    frame = pl.read_parquet(table, columns=["id", "path"]).filter(pl.col("id").is_in(ids))
    return {int(i): workdir.root / str(p) for i, p in frame.iter_rows() if p}
