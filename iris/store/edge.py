"""The embedded store: Qdrant Edge (``qdrant-edge-py``), Qdrant's engine in-process.

A collection is one Edge shard, a folder ``<root>/<collection>/`` holding segments and
``edge_config.json``; iris adds ``iris-collection.json`` with the
vector size and distance it asked for, so a mismatch is caught before Qdrant sees it.

One process at a time may hold a shard: iris locks ``<collection>/.iris-lock`` and a second
process gets a one-line StoreError. Within a process, every :class:`EdgeStore` on the
same folder shares one open shard (reference counted), so stages can each open and close
the store without stepping on one another.

HNSW is built by Qdrant's optimizer, which Edge runs only when asked: the store runs it
after writes, before the first approximate query and on close, so a store that was
closed once opens with its index ready (nothing is rebuilt on open).

Shards are created without a write-ahead log: replaying the WAL made every open of a 14K x
1280-d store cost 0.3 s more (0.33 s against 0.07 s), which ``iris similar`` pays each
time. Writes are flushed instead: upserts at least every ``FLUSH_EVERY_S`` seconds, payload
updates at once, everything on close, and whenever a writer calls :meth:`EdgeStore.flush`.
A writer killed in between loses its last seconds of upserts; ``iris embed`` keeps them in
a journal of its own until it has flushed (:mod:`iris.embed.journal`).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from iris.errors import DimensionError, StageOrderError, StoreError
from iris.store.base import (
    INDEXED_KEYS,
    Distance,
    Exported,
    Filter,
    Hit,
    Payload,
    Quantization,
    check_collection,
    check_points,
    check_queries,
    clean_payload,
    stack_exported,
)

LOCK_FILE = ".iris-lock"
META_FILE = "iris-collection.json"
EDGE_CONFIG_FILE = "edge_config.json"
_DISTANCE_TO_EDGE = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "bool": qe.PayloadSchemaType.Bool,
    "integer": qe.PayloadSchemaType.Integer,
}
_UPSERT_BATCH = 1024
FLUSH_EVERY_S = 5.0
"""Upserts reach disk at least this often; the rest on close (see the WAL note above)."""


@dataclass
class _Handle:
    """One open shard shared by every EdgeStore of this process on the same folder."""

    shard: qe.EdgeShard
    users: int = 1
    dirty: bool = False
    """Points were written since the optimizer last ran (HNSW may be incomplete)."""
    written: bool = False
    """Anything was written since the last flush (a read-only session skips it)."""
    flushed_at: float = 0.0
    lock: IO[bytes] | None = None
    """The open lock file: holding it keeps other processes out of the shard."""


_OPEN: dict[Path, _Handle] = {}
_LOCK = threading.Lock()


def _lock(folder: Path) -> IO[bytes]:
    """Take the shard's lock file, or say which folder another process holds.

    Qdrant Edge itself only locks its write-ahead log, which iris turns off (see above).
    """
    handle = open(folder / LOCK_FILE, "ab")  # noqa: SIM115 - held open until the shard closes
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows: no advisory locks; one iris process at a time is on the user
        pass
    except OSError:
        handle.close()
        raise StoreError(
            f"the embedded store {folder} is open in another process; "
            "wait for that iris command to finish (or use a Qdrant server: IRIS_QDRANT_URL)"
        ) from None
    return handle


def _edge_error(exc: Exception, what: str, path: Path) -> StoreError:
    text = str(exc)
    if "WouldBlock" in text or "lock" in text.lower():
        return StoreError(
            f"the embedded store {path} is open in another process; "
            "wait for that iris command to finish (or use a Qdrant server: IRIS_QDRANT_URL)"
        )
    if "dimension" in text.lower():
        return DimensionError(f"{what} on {path}: {text}")
    return StoreError(f"{what} on {path}: {text}")


def to_edge_filter(flt: Filter | None) -> qe.Filter | None:
    """Translate an iris :class:`Filter` into a Qdrant Edge filter."""
    if flt is None:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    for negated, key, kind, value in flt.conditions():
        condition: Any
        if kind == "empty":
            condition = qe.IsEmptyCondition(key)
        elif kind == "value":
            # qdrant-edge-py 0.9 reads a Python bool as the integer 1/0 (bool is an int), so a
            # bool filter would match nothing; numpy's bool_ is read as a real boolean.
            match = qe.MatchValue(np.bool_(value) if isinstance(value, bool) else value)  # type: ignore[arg-type]
            condition = qe.FieldCondition(key=key, match=match)
        else:
            condition = qe.FieldCondition(key=key, match=qe.MatchAny(value))
        (must_not if negated else must).append(condition)
    if flt.ids is not None:
        must.append(qe.HasIdCondition(set(flt.ids)))
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeStore:
    """A collection in an embedded Qdrant Edge shard under ``root``.

    Args:
        root: folder holding the collections (``workdir.qdrant``).
        collection: collection name; its shard lives in ``root / collection``.
        hnsw_ef: HNSW search breadth; ``0`` lets Qdrant choose.
        indexing_threshold_kb: segments larger than this get an HNSW index (smaller ones
            are searched exhaustively); ``None`` keeps Qdrant's default. Used on creation.
        quantization: ``int8`` keeps an int8 copy of every vector in RAM beside the float
            one (scalar quantization, used on creation): HNSW builds and searches on it,
            then rescores ``oversampling`` times ``k`` candidates with the float vectors.
            Exact searches ignore it. ``none``: float vectors only.
        oversampling: candidates per wanted neighbour that an HNSW search rescores.
    """

    kind = "edge"

    def __init__(
        self,
        root: Path,
        *,
        collection: str = "iris",
        hnsw_ef: int = 0,
        indexing_threshold_kb: int | None = None,
        quantization: Quantization = "none",
        oversampling: float = 2.0,
    ) -> None:
        if not collection or "/" in collection or collection.startswith("."):
            raise StoreError(f"collection name {collection!r} must be a plain, non-empty folder name")
        self.root = Path(root)
        self.collection = collection
        self.path = (self.root / collection).resolve()
        self.hnsw_ef = hnsw_ef
        self.indexing_threshold_kb = indexing_threshold_kb
        self.quantization = quantization
        self.oversampling = oversampling
        self._handle: _Handle | None = None
        self._closed = False
        if (self.path / EDGE_CONFIG_FILE).exists():
            self._attach(None)

    # ---------------------------------------------------------------- lifecycle

    def _attach(self, config: qe.EdgeConfig | None) -> _Handle:
        with _LOCK:
            handle = _OPEN.get(self.path)
            if handle is not None:
                handle.users += 1
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                lock = _lock(self.path)
                try:
                    if config is None:
                        shard = qe.EdgeShard.load(str(self.path))
                    else:
                        shard = qe.EdgeShard.create(str(self.path), config)
                except Exception as exc:
                    lock.close()
                    raise _edge_error(exc, "opening the shard", self.path) from None
                info = shard.info()
                # A writer that never closed leaves segments unindexed: index before querying.
                stale = info.indexed_vectors_count < info.points_count
                handle = _OPEN[self.path] = _Handle(shard, dirty=stale, lock=lock)
        self._handle = handle
        return handle

    def _shard(self) -> qe.EdgeShard:
        if self._closed:
            raise StoreError(f"the store {self.path} was closed")
        if self._handle is None:
            raise StageOrderError(
                f"collection {self.collection!r} does not exist yet in {self.root}; run `iris embed` first"
            )
        return self._handle.shard

    def close(self) -> None:
        """Release this store; the last user of the shard builds pending HNSW and closes it."""
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with _LOCK:
            handle.users -= 1
            if handle.users > 0:
                return
            _OPEN.pop(self.path, None)
            if handle.dirty:
                handle.shard.optimize()
            if handle.written or handle.dirty:
                handle.shard.flush()
            handle.shard.close()
            if handle.lock is not None:
                handle.lock.close()

    def flush(self) -> None:
        """Write every upsert so far to disk now (``iris embed`` does, then empties its journal)."""
        self._flush()

    def _flush(self, *, unless_within: float = 0.0) -> None:
        handle = self._handle
        if handle is None or not handle.written:
            return
        now = time.monotonic()
        if now - handle.flushed_at >= unless_within:
            handle.shard.flush()
            handle.flushed_at, handle.written = now, False

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- collection

    def _meta(self) -> tuple[int, Distance] | None:
        for name in (META_FILE, EDGE_CONFIG_FILE):
            file = self.path / name
            if not file.exists():
                continue
            data = json.loads(file.read_text(encoding="utf-8"))
            if name == META_FILE:
                return int(data["dim"]), data["distance"]
            # A shard restored from a server snapshot has only Qdrant's own config.
            params = data.get("vectors", {}).get("", {})
            if params:
                return int(params["size"]), str(params["distance"]).lower()  # type: ignore[return-value]
        return None

    def ensure_collection(self, *, dim: int, distance: Distance = "cosine") -> None:
        """Create the collection, or check that the existing one has this size and distance.

        Raises:
            DimensionError: the existing collection differs (both values are named).
        """
        where = f"collection {self.collection!r} in {self.path}"
        if check_collection(self._meta(), dim=dim, distance=distance, where=where):
            if self._handle is None:
                self._attach(None)
            return
        optimizers = None
        if self.indexing_threshold_kb is not None:
            optimizers = qe.EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb)
        quantization = None
        if self.quantization == "int8":
            quantization = qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, quantile=0.99, always_ram=True
            )
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=_DISTANCE_TO_EDGE[distance]),
            quantization_config=quantization,
            optimizers=optimizers,
            wal_enabled=False,
        )
        handle = self._attach(config)
        handle.written = True
        for key, schema in INDEXED_KEYS.items():
            handle.shard.update(qe.UpdateOperation.create_field_index(key, _SCHEMA[schema]))
        (self.path / META_FILE).write_text(json.dumps({"dim": dim, "distance": distance}), encoding="utf-8")
        self._flush()

    def dimension(self) -> int | None:
        """Vector size of the collection, or None when it does not exist yet."""
        meta = self._meta()
        return None if meta is None else meta[0]

    def distance(self) -> Distance | None:
        """Distance of the collection, or None when it does not exist yet."""
        meta = self._meta()
        return None if meta is None else meta[1]

    # ---------------------------------------------------------------- writes

    def upsert(
        self,
        ids: npt.NDArray[np.int64] | Sequence[int],
        vectors: npt.NDArray[np.float32],
        payloads: Sequence[Payload],
    ) -> None:
        """Insert or replace points by id (idempotent); creates a cosine collection if none exists."""
        id_array, matrix, payloads = check_points(ids, vectors, payloads, dim=self.dimension())
        if not len(id_array):
            return
        if self._handle is None:
            self.ensure_collection(dim=matrix.shape[1])
        shard = self._shard()
        for start in range(0, len(id_array), _UPSERT_BATCH):
            stop = start + _UPSERT_BATCH
            points = [
                qe.Point(int(i), vector, payload)
                for i, vector, payload in zip(
                    id_array[start:stop].tolist(), matrix[start:stop], payloads[start:stop], strict=True
                )
            ]
            try:
                shard.update(qe.UpdateOperation.upsert_points(points))
            except Exception as exc:
                raise _edge_error(exc, "upsert", self.path) from None
        assert self._handle is not None
        self._handle.dirty = self._handle.written = True
        self._flush(unless_within=FLUSH_EVERY_S)

    def set_payload(self, updates: Mapping[int, Payload]) -> None:
        """Merge the given keys into each point's payload (other keys are kept).

        Raises:
            StoreError: an id is not in the collection (nothing is written then).
        """
        if not updates:
            return
        shard = self._shard()
        current = {int(r.id): r.payload or {} for r in shard.retrieve(list(map(int, updates)), True, False)}
        missing = set(map(int, updates)) - set(current)
        if missing:
            raise StoreError(
                f"set_payload: {len(missing)} id(s) not in collection {self.collection!r}, "
                f"e.g. {sorted(missing)[:5]}"
            )
        # A payload write moves the point out of its HNSW segment, and the re-index costs
        # as much as the first build (70 s for 50K points here): write only real changes.
        changed = {i: p for i, p in updates.items() if not _unchanged(current[int(i)], clean_payload(p))}
        if not changed:
            return
        # Points sharing the same update (a status, a label) go in one operation.
        for payload, point_ids in _group_updates(changed):
            shard.update(qe.UpdateOperation.set_payload(point_ids, payload))
        assert self._handle is not None
        # A payload write moves its points out of the optimized (HNSW) segments, and later
        # approximate queries over them were 2.2x slower at 100K points: re-optimize first.
        self._handle.written = self._handle.dirty = True
        self._flush()

    # ---------------------------------------------------------------- reads

    def count(self, flt: Filter | None = None) -> int:
        """Number of points (matching ``flt``)."""
        if self._handle is None and self.dimension() is None:
            return 0
        return int(self._shard().count(qe.CountRequest(exact=True, filter=to_edge_filter(flt))))

    def ids(self, flt: Filter | None = None) -> set[int]:
        """Ids of all points (matching ``flt``)."""
        if self._handle is None and self.dimension() is None:
            return set()
        shard = self._shard()
        edge_filter = to_edge_filter(flt)
        found: set[int] = set()
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset, limit=8192, filter=edge_filter, with_payload=False, with_vector=False
                )
            )
            found.update(int(r.id) for r in records)
            if offset is None:
                return found

    def retrieve(
        self, ids: Sequence[int], *, with_vectors: bool = False
    ) -> list[tuple[int, Payload, npt.NDArray[np.float32] | None]]:
        """Points by id, in the order asked; missing ids are skipped."""
        if not len(ids):
            return []
        records = self._shard().retrieve([int(i) for i in ids], True, with_vectors)
        by_id = {int(r.id): r for r in records}
        out: list[tuple[int, Payload, npt.NDArray[np.float32] | None]] = []
        for point_id in (int(i) for i in ids):
            record = by_id.get(point_id)
            if record is None:
                continue
            vector = np.asarray(record.vector, dtype=np.float32) if with_vectors else None
            out.append((point_id, dict(record.payload or {}), vector))
        return out

    def optimize(self) -> None:
        """Build pending HNSW/segment work now (runs anyway before approximate queries)."""
        handle = self._handle
        if handle is not None and handle.dirty:
            handle.shard.optimize()
            handle.dirty = False

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

        ``with_payload=False`` leaves each hit's payload empty: at a million queries the
        payload dicts are most of the time and memory when only ids are needed.
        """
        queries = check_queries(vectors, k=k, dim=self.dimension())
        if self._handle is None:
            return [[] for _ in range(len(queries))]
        if not exact:
            self.optimize()
        shard = self._shard()
        # Exact searches read the float vectors only; HNSW rescores its quantized candidates.
        quantized = qe.QuantizationSearchParams(
            ignore=exact, rescore=not exact, oversampling=None if exact else self.oversampling
        )
        params = qe.SearchParams(hnsw_ef=self.hnsw_ef or None, exact=exact, quantization=quantized)
        edge_filter = to_edge_filter(flt)
        request = qe.QueryBatchRequest(
            [
                qe.QueryRequest(
                    limit=k,
                    query=qe.Query.Nearest(q.tolist()),
                    filter=edge_filter,
                    with_payload=with_payload,
                    params=params,
                )
                for q in queries
            ]
        )
        try:
            results = shard.query_batch(request)
        except Exception as exc:
            raise _edge_error(exc, "query", self.path) from None
        if not with_payload:
            return [[Hit(int(p.id), float(p.score)) for p in row] for row in results]
        return [[Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in row] for row in results]

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[Exported]:
        """Every point in id order, ``batch`` at a time."""
        if self._handle is None and self.dimension() is None:
            return
        shard = self._shard()
        dim = self.dimension() or 0
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=with_vectors)
            )
            if records:
                vectors = (
                    np.asarray([r.vector for r in records], dtype=np.float32)
                    if with_vectors
                    else np.zeros((len(records), 0), np.float32)
                )
                yield Exported(
                    ids=np.fromiter((int(r.id) for r in records), np.int64, len(records)),
                    vectors=vectors.reshape(len(records), dim if with_vectors else 0),
                    payloads=[dict(r.payload or {}) for r in records],
                )
            if offset is None:
                return

    def export(self) -> Exported:
        """Every point with its vector and payload, ordered by id."""
        return stack_exported(list(self.scroll(batch=4096)), self.dimension() or 0)

    def snapshot(self, path: Path) -> Path:
        """Write the shard as a tar archive (the layout ``EdgeShard.unpack_snapshot`` reads).

        ``path`` is a file, or a folder to write ``<collection>.snapshot.tar`` into.
        """
        shard = self._shard()
        self.optimize()
        shard.flush()
        path = Path(path)
        target = path / f"{self.collection}.snapshot.tar" if path.is_dir() else path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with tarfile.open(tmp, "w") as archive:
            for name in sorted(os.listdir(self.path)):
                if name in {"wal", LOCK_FILE}:
                    # Flushed segments hold every point; a WAL copied while open is only noise.
                    continue
                archive.add(self.path / name, arcname=name)
        os.replace(tmp, target)
        return target


def restore_snapshot(snapshot: Path, root: Path, *, collection: str = "iris") -> EdgeStore:
    """Unpack a snapshot written by :meth:`EdgeStore.snapshot` into ``root / collection``.

    Raises:
        StoreError: the target collection already exists or the archive is unreadable.
    """
    target = Path(root) / collection
    if target.exists() and any(target.iterdir()):
        raise StoreError(f"{target} already holds a collection; restore into an empty place")
    try:
        qe.EdgeShard.unpack_snapshot(str(snapshot), str(target))
    except Exception as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise StoreError(f"cannot unpack snapshot {snapshot}: {exc}") from None
    return EdgeStore(root, collection=collection)


def _unchanged(current: Mapping[str, Any], update: Payload) -> bool:
    """Whether merging ``update`` into ``current`` leaves it as it is."""
    return all(
        key in current and type(current[key]) is type(value) and current[key] == value
        for key, value in update.items()
    )


def _group_updates(updates: Mapping[int, Payload]) -> list[tuple[Payload, list[qe.PointId]]]:
    groups: dict[str, tuple[Payload, list[qe.PointId]]] = {}
    for point_id, payload in updates.items():
        key = json.dumps(payload, sort_keys=True, default=str)
        groups.setdefault(key, (clean_payload(payload), []))[1].append(int(point_id))
    return list(groups.values())
