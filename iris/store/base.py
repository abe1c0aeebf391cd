"""The vector store interface every stage talks to.

Two implementations share it (see ``iris.store.open_store``):

* ``edge.EdgeStore`` — Qdrant Edge, Qdrant's engine in-process (the default);
* ``server.ServerStore`` — ``qdrant-client`` against a Qdrant server, or its local mode.

Point ids are non-negative 63-bit integers (the image ids of ``iris.tables.IMAGES``).
Payload keys written by iris (all optional except ``split``):

=============== ======= ===================================================
key             type    meaning
=============== ======= ===================================================
split           str     "gt" | "pool" | "test"
source          str     URL or path from the manifest
label           int     known or final label (0/1); absent when unknown
has_label       bool    True when ``label`` is set (the filter kNN uses)
pseudo_label    int     automatic label from the pseudolabel stage
status          str     "gt" | "unlabeled" | "auto" | "problematic" | "neighbour" |
                        "crowd" | "propagated" | "test"
=============== ======= ===================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Distance = Literal["cosine", "dot", "euclid"]
Payload = dict[str, Any]


@dataclass(frozen=True)
class Filter:
    """Equality filter on payload keys.

    ``must={"has_label": True, "split": ["gt", "pool"]}`` keeps points whose ``has_label``
    is True and whose ``split`` is one of the listed values; ``must_not`` excludes likewise.
    """

    must: Mapping[str, Any] = field(default_factory=dict)
    must_not: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    """Similarity as Qdrant reports it: higher is closer for cosine/dot, lower for euclid."""
    payload: Payload = field(default_factory=dict)


@dataclass(frozen=True)
class Exported:
    """Every point of a collection, ordered by id."""

    ids: npt.NDArray[np.int64]  # (n,)
    vectors: npt.NDArray[np.float32]  # (n, dim)
    payloads: list[Payload]


@runtime_checkable
class VectorStore(Protocol):
    """What iris needs from Qdrant, whichever way it runs."""

    kind: str

    def ensure_collection(self, *, dim: int, distance: Distance = "cosine") -> None:
        """Create the collection, or check that the existing one has this size and distance.

        Raises:
            DimensionError: the existing collection differs.
        """

    def dimension(self) -> int | None:
        """Vector size of the collection, or None when it does not exist yet."""

    def upsert(
        self,
        ids: npt.NDArray[np.int64] | Sequence[int],
        vectors: npt.NDArray[np.float32],
        payloads: Sequence[Payload],
    ) -> None:
        """Insert or replace points by id (idempotent)."""

    def set_payload(self, updates: Mapping[int, Payload]) -> None:
        """Merge the given keys into each point's payload (other keys are kept)."""

    def count(self, flt: Filter | None = None) -> int: ...

    def ids(self, flt: Filter | None = None) -> set[int]:
        """Ids of all points (matching ``flt``)."""

    def retrieve(
        self, ids: Sequence[int], *, with_vectors: bool = False
    ) -> list[tuple[int, Payload, npt.NDArray[np.float32] | None]]:
        """Points by id, in the order asked; missing ids are skipped."""

    def query_batch(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        k: int,
        flt: Filter | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        """The ``k`` nearest points (matching ``flt``) of each query vector, best first."""

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[Exported]:
        """Every point in id order, ``batch`` at a time."""

    def export(self) -> Exported:
        """Every point with its vector and payload, ordered by id."""

    def snapshot(self, path: Path) -> Path:
        """Write a snapshot/archive of the collection to ``path``; returns the file written."""

    def close(self) -> None: ...
