"""The vector store interface every stage talks to.

Two implementations share it (see ``iris.store.open_store``):

* ``edge.EdgeStore`` — Qdrant Edge, Qdrant's engine in-process (the default);
* ``server.ServerStore`` — ``qdrant-client`` against a Qdrant server, or its local mode.

Point ids are non-negative 63-bit integers (the image ids of ``iris.tables.IMAGES``).
Payload keys written by iris (all optional except ``split``):

=============== ======= ===================================================
key             type    meaning
=============== ======= ===================================================
split           str     :class:`iris.tables.Split`: "gt" | "pool" | "test"
source          str     URL or path from the manifest
label           int     known or final label (0/1); absent when unknown
has_label       bool    True when ``label`` is set (the filter kNN uses)
pseudo_label    int     automatic label from the pseudolabel stage
status          str     :class:`iris.tables.Status` (pipeline state): "gt" | "unlabeled" |
                        "auto" | "problematic" | "neighbour" | "test"
origin          str     :class:`iris.tables.Origin` of the final label (set by propagate):
                        "gt" | "crowd" | "auto" | "propagated"
=============== ======= ===================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from iris.errors import DimensionError, StoreError
from iris.vocabulary import SPLITS as SPLITS  # re-exported: the vocabulary lives in iris.vocabulary
from iris.vocabulary import STATUSES as STATUSES

Distance = Literal["cosine", "dot", "euclid"]
Quantization = Literal["int8", "none"]
"""How a collection keeps its vectors for HNSW: an int8 copy beside the float one, or floats only."""
Payload = dict[str, Any]

DISTANCES: tuple[Distance, ...] = ("cosine", "dot", "euclid")
INDEXED_KEYS: dict[str, Literal["keyword", "bool", "integer"]] = {
    "split": "keyword",
    "status": "keyword",
    "has_label": "bool",
    "label": "integer",
}
"""Payload keys that get a payload index: the filters every stage uses."""
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Filter:
    """Equality filter on payload keys.

    ``must={"has_label": True, "split": ["gt", "pool"]}`` keeps points whose ``has_label``
    is True and whose ``split`` is one of the listed values; ``must_not`` excludes likewise.
    A value of ``None`` means "the key is absent or null" (``must_not={"label": None}``
    keeps points that have a label). ``ids``, when given, keeps only the points with those ids
    (what lives in the tables rather than the payload, such as a pipeline status).
    """

    must: Mapping[str, Any] = field(default_factory=dict)
    must_not: Mapping[str, Any] = field(default_factory=dict)
    ids: frozenset[int] | None = None

    def conditions(self) -> Iterator[tuple[bool, str, Literal["value", "any", "empty"], Any]]:
        """Each condition as ``(negated, key, kind, value)``, values checked.

        Raises:
            StoreError: a value is neither a str, int, bool, None nor a list of str/int.
        """
        for negated, mapping in ((False, self.must), (True, self.must_not)):
            for key, value in mapping.items():
                if value is None:
                    yield negated, key, "empty", None
                elif isinstance(value, bool | str | int | np.integer | np.bool_):
                    yield negated, key, "value", _scalar(value)
                elif isinstance(value, list | tuple | set | frozenset | np.ndarray):
                    items = [_scalar(v) for v in value]
                    bools = {v for v in items if isinstance(v, bool)}
                    if bools and len(bools) == len(items):
                        # Qdrant's "any" match takes str or int only; a bool list is a value
                        # match ([True]) or no constraint at all ([True, False]).
                        if len(bools) == 1:
                            yield negated, key, "value", bools.pop()
                        elif negated:
                            yield False, key, "any", []
                        continue
                    if any(isinstance(v, bool) or not isinstance(v, str | int) for v in items):
                        raise StoreError(f"filter on {key!r}: got {value!r}, expected str or int values")
                    yield negated, key, "any", sorted(set(items), key=str)
                else:
                    raise StoreError(
                        f"filter on {key!r}: got {type(value).__name__} {value!r}, "
                        "expected str, int, bool, None or a list of str/int"
                    )


def _scalar(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


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


def check_points(
    ids: npt.NDArray[np.int64] | Sequence[int],
    vectors: npt.NDArray[np.float32],
    payloads: Sequence[Payload],
    *,
    dim: int | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], list[Payload]]:
    """Validate an upsert batch; returns int64 ids, C-contiguous float32 vectors and payloads
    with numpy scalars turned into Python values (what Qdrant's JSON accepts).

    Raises:
        DimensionError: the vectors' width differs from the collection's ``dim``.
        StoreError: shapes disagree, ids are negative/too large/repeated, or vectors not finite.
    """
    id_array = np.asarray(ids)
    if id_array.ndim != 1 or (id_array.size and not np.issubdtype(id_array.dtype, np.integer)):
        raise StoreError(f"upsert: ids must be a 1-d sequence of integers, got shape {id_array.shape}")
    id_array = id_array.astype(np.int64, copy=False)
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise StoreError(f"upsert: vectors must be 2-d (n, dim), got shape {matrix.shape}")
    if not (len(id_array) == matrix.shape[0] == len(payloads)):
        raise StoreError(
            f"upsert: {len(id_array)} ids, {matrix.shape[0]} vectors and {len(payloads)} payloads; "
            "expected the same number of each"
        )
    if dim is not None and matrix.shape[1] != dim:
        raise DimensionError(f"upsert: vectors have {matrix.shape[1]} dimensions, the collection has {dim}")
    if id_array.size:
        if int(id_array.min()) < 0:
            raise StoreError(f"upsert: point ids must be >= 0, got {int(id_array.min())}")
        unique, counts = np.unique(id_array, return_counts=True)
        if len(unique) != len(id_array):
            raise StoreError(f"upsert: id {int(unique[counts > 1][0])} appears more than once in one batch")
        if not np.isfinite(matrix).all():
            bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
            raise StoreError(f"upsert: vector of id {int(id_array[bad])} has NaN or infinite values")
    return id_array, matrix, [clean_payload(p) for p in payloads]


def clean_payload(payload: Mapping[str, Any]) -> Payload:
    """A copy of ``payload`` with numpy scalars and arrays turned into Python values."""
    return {str(key): _plain(value) for key, value in payload.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def check_collection(
    existing: tuple[int, Distance] | None, *, dim: int, distance: Distance, where: str
) -> bool:
    """Validate a requested collection shape against the existing one (None: none yet).

    Returns:
        True when the collection exists already (with this size and distance).

    Raises:
        StoreError: an unknown distance or a size below 1.
        DimensionError: the existing collection differs (both values are named).
    """
    if distance not in DISTANCES:
        raise StoreError(f"distance {distance!r} is not one of {', '.join(DISTANCES)}")
    if dim < 1:
        raise StoreError(f"dim={dim} should be >= 1")
    if existing is None:
        return False
    if tuple(existing) != (dim, distance):
        raise DimensionError(
            f"{where} holds {existing[0]}-d {existing[1]} vectors; asked for {dim}-d {distance} "
            "(use another collection or re-embed)"
        )
    return True


def check_queries(vectors: npt.NDArray[np.float32], *, k: int, dim: int | None) -> npt.NDArray[np.float32]:
    """Validate query vectors (n, dim) and ``k``; returns them as C-contiguous float32."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise StoreError(f"query: vectors must be 2-d (n, dim), got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise DimensionError(f"query: vectors have {matrix.shape[1]} dimensions, the collection has {dim}")
    if k < 1:
        raise StoreError(f"query: k={k} should be >= 1")
    return np.ascontiguousarray(matrix)


def stack_exported(parts: Sequence[Exported], dim: int) -> Exported:
    """Concatenate scroll batches into one :class:`Exported`."""
    if not parts:
        return Exported(np.zeros(0, np.int64), np.zeros((0, dim), np.float32), [])
    return Exported(
        ids=np.concatenate([p.ids for p in parts]),
        vectors=np.concatenate([p.vectors for p in parts]),
        payloads=[payload for p in parts for payload in p.payloads],
    )


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

    def distance(self) -> Distance | None:
        """Distance of the collection, or None when it does not exist yet."""

    def upsert(
        self,
        ids: npt.NDArray[np.int64] | Sequence[int],
        vectors: npt.NDArray[np.float32],
        payloads: Sequence[Payload],
    ) -> None:
        """Insert or replace points by id (idempotent)."""

    def set_payload(self, updates: Mapping[int, Payload]) -> None:
        """Merge the given keys into each point's payload (other keys are kept)."""

    def flush(self) -> None:
        """Make every write so far survive a killed process (the embedded store batches them)."""

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
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        """The ``k`` nearest points (matching ``flt``) of each query vector, best first.

        ``with_payload=False``: hits carry ids and scores only (empty payloads).
        """

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[Exported]:
        """Every point in id order, ``batch`` at a time."""

    def export(self) -> Exported:
        """Every point with its vector and payload, ordered by id."""

    def snapshot(self, path: Path) -> Path:
        """Write a snapshot/archive of the collection to ``path``; returns the file written."""

    def close(self) -> None: ...

    def __enter__(self) -> VectorStore:
        """``with open_store(...) as store:`` closes the store on the way out."""

    def __exit__(self, *exc: object) -> None: ...
