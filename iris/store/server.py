"""The server store: ``qdrant-client`` against a Qdrant server, or its local mode.

The same class serves three places a collection can live:

* a Qdrant server (``ServerStore.connect(url, api_key=...)``; docker-compose.yml starts one);
* qdrant-client's local mode on disk (``ServerStore.local(path)``) or in memory
  (``ServerStore.local(":memory:")``), which speaks the server's API in pure Python and is
  how this code path is tested without a server. It is brute force: never the default.

Queries use ``query_points``/``query_batch_points`` (``search`` is deprecated).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

import httpx
import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

from iris.errors import ConfigError, DimensionError, StageOrderError, StoreError
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

_DISTANCE_TO_QDRANT = {
    "cosine": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euclid": models.Distance.EUCLID,
}
_DISTANCE_FROM_QDRANT: dict[models.Distance, Distance] = {v: k for k, v in _DISTANCE_TO_QDRANT.items()}  # type: ignore[misc]
_SCHEMA = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "bool": models.PayloadSchemaType.BOOL,
    "integer": models.PayloadSchemaType.INTEGER,
}
_QUERY_BATCH = 256


class _Layout(TypedDict, total=False):
    """How a collection the store creates is spread over a cluster (see ``ServerStore``)."""

    shards: int
    replication_factor: int
    write_consistency: int


def check_layout(*, shards: int, replication_factor: int, write_consistency: int) -> None:
    """Check the cluster settings of a collection to create.

    Raises:
        ConfigError: a count below 1, or a write consistency above the replication factor.
    """
    for name, value in (
        ("store.shards", shards),
        ("store.replication_factor", replication_factor),
        ("store.write_consistency", write_consistency),
    ):
        if value < 1:
            raise ConfigError(f"{name}: got {value}, expected >= 1")
    if write_consistency > replication_factor:
        raise ConfigError(
            f"store.write_consistency: got {write_consistency}, expected <= "
            f"store.replication_factor={replication_factor} (a write cannot wait for more copies than exist)"
        )


def to_qdrant_filter(flt: Filter | None) -> models.Filter | None:
    """Translate an iris :class:`Filter` into a qdrant-client filter."""
    if flt is None:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    for negated, key, kind, value in flt.conditions():
        condition: Any
        if kind == "empty":
            condition = models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
        elif kind == "value":
            condition = models.FieldCondition(key=key, match=models.MatchValue(value=value))
        else:
            condition = models.FieldCondition(key=key, match=models.MatchAny(any=value))
        (must_not if negated else must).append(condition)
    if flt.ids is not None:
        must.append(models.HasIdCondition(has_id=sorted(flt.ids)))
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


class ServerStore:
    """A collection behind ``qdrant-client``.

    Args:
        client: an open client (server or local mode); the store closes it on ``close``.
        collection: collection name.
        hnsw_ef: HNSW search breadth; ``0`` lets Qdrant choose.
        batch_size: points per upsert request.
        location: where the client points, for messages (URL or path).
        shards: shards of a collection this store creates (a cluster spreads them over nodes).
        replication_factor: copies of each shard of a collection this store creates.
        write_consistency: copies that must confirm a write (at most ``replication_factor``).
        quantization: ``int8``: a collection this store creates keeps int8 copies of its
            vectors in RAM (scalar quantization); HNSW searches rescore ``oversampling`` times
            ``k`` candidates with the float vectors. Exact searches ignore it.
        oversampling: candidates per wanted neighbour that an HNSW search rescores.
    """

    def __init__(
        self,
        client: QdrantClient,
        *,
        collection: str = "iris",
        hnsw_ef: int = 0,
        batch_size: int = 512,
        location: str = "",
        url: str = "",
        api_key: str = "",
        shards: int = 1,
        replication_factor: int = 1,
        write_consistency: int = 1,
        quantization: Quantization = "none",
        oversampling: float = 2.0,
    ) -> None:
        check_layout(
            shards=shards, replication_factor=replication_factor, write_consistency=write_consistency
        )
        self.client = client
        self.collection = collection
        self.hnsw_ef = hnsw_ef
        self.batch_size = max(1, batch_size)
        self.location = location or url
        self._url = url
        self._api_key = api_key
        self.kind = "server" if url else "local"
        self._dim: tuple[int, Distance] | None = None
        self.shards = shards
        self.replication_factor = replication_factor
        self.write_consistency = write_consistency
        self.quantization = quantization
        self.oversampling = oversampling

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        api_key: str = "",
        collection: str = "iris",
        timeout_s: float = 60.0,
        hnsw_ef: int = 0,
        batch_size: int = 512,
        shards: int = 1,
        replication_factor: int = 1,
        write_consistency: int = 1,
        quantization: Quantization = "none",
        oversampling: float = 2.0,
    ) -> ServerStore:
        """A store on the Qdrant server at ``url`` (``:memory:`` or ``local:PATH`` for local mode).

        ``shards``, ``replication_factor`` and ``write_consistency`` apply to a collection
        this store creates; an existing collection keeps its own (``layout()`` reports them).
        """
        layout = _Layout(
            shards=shards, replication_factor=replication_factor, write_consistency=write_consistency
        )
        if url == ":memory:" or url.startswith("local:"):
            return cls.local(url.removeprefix("local:") or ":memory:", collection=collection, **layout)
        # Local mode searches exhaustively: quantization is a server's.
        if not url.startswith(("http://", "https://")):
            raise StoreError(f"Qdrant URL {url!r} should start with http:// or https:// (or be :memory:)")
        try:
            client = QdrantClient(
                url=url, api_key=api_key or None, timeout=int(timeout_s), check_compatibility=False
            )
        except Exception as exc:
            raise StoreError(f"cannot connect to Qdrant at {url}: {exc}") from None
        return cls(
            client,
            collection=collection,
            hnsw_ef=hnsw_ef,
            batch_size=batch_size,
            url=url.rstrip("/"),
            api_key=api_key,
            quantization=quantization,
            oversampling=oversampling,
            **layout,
        )

    @classmethod
    def local(
        cls, path: str | Path = ":memory:", *, collection: str = "iris", **layout: Unpack[_Layout]
    ) -> ServerStore:
        """A store in qdrant-client's local mode, on disk at ``path`` or ``:memory:``.

        ``layout`` (shards, replication_factor, write_consistency) is passed on when a
        collection is created; local mode accepts and ignores it.
        """
        location = str(path)
        try:
            client = (
                QdrantClient(location=":memory:") if location == ":memory:" else QdrantClient(path=location)
            )
        except Exception as exc:
            raise StoreError(f"cannot open qdrant-client local storage {location}: {exc}") from None
        return cls(client, collection=collection, location=location, **layout)

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call, turning transport and API failures into one-line StoreErrors."""
        try:
            return func(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "dimension" in text.lower():
                raise DimensionError(f"{what} on {self.location}/{self.collection}: {text}") from None
            raise StoreError(f"{what} on Qdrant {self.location} ({self.collection}): {text}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> ServerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- collection

    def _exists(self) -> bool:
        return bool(self._call("collection_exists", self.client.collection_exists, self.collection))

    def _params(self) -> tuple[int, Distance] | None:
        if self._dim is not None:
            return self._dim
        if not self._exists():
            return None
        info = self._call("get_collection", self.client.get_collection, self.collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreError(
                f"collection {self.collection!r} on {self.location} uses named vectors; "
                "iris expects one unnamed vector per point"
            )
        self._dim = (int(vectors.size), _DISTANCE_FROM_QDRANT[vectors.distance])
        return self._dim

    def ensure_collection(self, *, dim: int, distance: Distance = "cosine") -> None:
        """Create the collection, or check that the existing one has this size and distance.

        Raises:
            DimensionError: the existing collection differs (both values are named).
        """
        where = f"collection {self.collection!r} on {self.location}"
        if check_collection(self._params(), dim=dim, distance=distance, where=where):
            return
        self._call(
            "create_collection",
            self.client.create_collection,
            self.collection,
            vectors_config=models.VectorParams(size=dim, distance=_DISTANCE_TO_QDRANT[distance]),
            shard_number=self.shards,
            replication_factor=self.replication_factor,
            write_consistency_factor=self.write_consistency,
            quantization_config=(
                models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(
                        type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                    )
                )
                if self.quantization == "int8"
                else None
            ),
        )
        if self.kind == "server":
            # Local mode has no payload indexes (it warns); a server filters faster with them.
            for key, schema in INDEXED_KEYS.items():
                self._call(
                    "create_payload_index",
                    self.client.create_payload_index,
                    self.collection,
                    field_name=key,
                    field_schema=_SCHEMA[schema],
                )
        self._dim = (dim, distance)

    def layout(self) -> dict[str, Any]:
        """How the collection is spread: shards, copies, write consistency, replicas per shard.

        On a server the numbers are the collection's own (what it was created with) and
        ``replicas`` maps each shard to the states of its copies, from the cluster info
        (``{"0": ["Active", "Active"], ...}``). Local mode keeps no layout: it reports the
        settings it would create with, and no replicas. Empty when there is no collection.
        """
        if not self._exists():
            return {}
        if self.kind != "server":
            return {
                "shards": self.shards,
                "replication_factor": self.replication_factor,
                "write_consistency": self.write_consistency,
                "replicas": None,
            }
        params = self._call("get_collection", self.client.get_collection, self.collection).config.params
        cluster = self._call("collection_cluster_info", self.client.collection_cluster_info, self.collection)
        replicas: dict[str, list[str]] = {}
        for shard in [*cluster.local_shards, *cluster.remote_shards]:
            state = getattr(shard.state, "value", shard.state)
            replicas.setdefault(str(shard.shard_id), []).append(str(state))
        return {
            "shards": int(params.shard_number or 1),
            "replication_factor": int(params.replication_factor or 1),
            "write_consistency": int(params.write_consistency_factor or 1),
            "replicas": dict(sorted(replicas.items(), key=lambda kv: int(kv[0]))),
        }

    def dimension(self) -> int | None:
        """Vector size of the collection, or None when it does not exist yet."""
        params = self._params()
        return None if params is None else params[0]

    def distance(self) -> Distance | None:
        """Distance of the collection, or None when it does not exist yet."""
        params = self._params()
        return None if params is None else params[1]

    def _require(self) -> int:
        dim = self.dimension()
        if dim is None:
            raise StageOrderError(
                f"collection {self.collection!r} does not exist on {self.location}; "
                "run `iris embed` or `iris store copy-to-server` first"
            )
        return dim

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
        if self.dimension() is None:
            self.ensure_collection(dim=matrix.shape[1])
        for start in range(0, len(id_array), self.batch_size):
            stop = start + self.batch_size
            batch = models.Batch(
                ids=id_array[start:stop].tolist(),
                vectors=matrix[start:stop].tolist(),
                payloads=list(payloads[start:stop]),
            )
            self._call("upsert", self.client.upsert, self.collection, points=batch, wait=True)

    def flush(self) -> None:
        """Nothing to do: every write waits for the server (``wait=True``)."""

    def set_payload(self, updates: Mapping[int, Payload]) -> None:
        """Merge the given keys into each point's payload (other keys are kept).

        Raises:
            StoreError: an id is not in the collection (nothing is written then).
        """
        if not updates:
            return
        self._require()
        asked = [int(i) for i in updates]
        found = self._call(
            "retrieve",
            self.client.retrieve,
            self.collection,
            ids=asked,
            with_payload=False,
            with_vectors=False,
        )
        missing = set(asked) - {int(r.id) for r in found}
        if missing:
            raise StoreError(
                f"set_payload: {len(missing)} id(s) not in collection {self.collection!r}, "
                f"e.g. {sorted(missing)[:5]}"
            )
        groups: dict[str, tuple[Payload, list[int]]] = {}
        for point_id, payload in updates.items():
            key = json.dumps(payload, sort_keys=True, default=str)
            groups.setdefault(key, (dict(payload), []))[1].append(int(point_id))
        for payload, point_ids in groups.values():
            payload = clean_payload(payload)
            for start in range(0, len(point_ids), 4096):
                self._call(
                    "set_payload",
                    self.client.set_payload,
                    self.collection,
                    payload=payload,
                    points=point_ids[start : start + 4096],
                    wait=True,
                )

    # ---------------------------------------------------------------- reads

    def count(self, flt: Filter | None = None) -> int:
        """Number of points (matching ``flt``)."""
        if self.dimension() is None:
            return 0
        result = self._call(
            "count", self.client.count, self.collection, count_filter=to_qdrant_filter(flt), exact=True
        )
        return int(result.count)

    def ids(self, flt: Filter | None = None) -> set[int]:
        """Ids of all points (matching ``flt``)."""
        if self.dimension() is None:
            return set()
        qdrant_filter = to_qdrant_filter(flt)
        found: set[int] = set()
        offset: Any = None
        while True:
            records, offset = self._call(
                "scroll",
                self.client.scroll,
                self.collection,
                scroll_filter=qdrant_filter,
                limit=8192,
                offset=offset,
                with_payload=False,
                with_vectors=False,
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
        self._require()
        records = self._call(
            "retrieve",
            self.client.retrieve,
            self.collection,
            ids=[int(i) for i in ids],
            with_payload=True,
            with_vectors=with_vectors,
        )
        by_id = {int(r.id): r for r in records}
        out: list[tuple[int, Payload, npt.NDArray[np.float32] | None]] = []
        for point_id in (int(i) for i in ids):
            record = by_id.get(point_id)
            if record is None:
                continue
            vector = np.asarray(record.vector, dtype=np.float32) if with_vectors else None
            out.append((point_id, dict(record.payload or {}), vector))
        return out

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
        queries = check_queries(vectors, k=k, dim=self.dimension())
        if self.dimension() is None:
            return [[] for _ in range(len(queries))]
        qdrant_filter = to_qdrant_filter(flt)
        # Local mode is always exact and warns about search params; only a server gets them.
        # Exact searches read the float vectors only; HNSW rescores its quantized candidates.
        params = (
            models.SearchParams(
                hnsw_ef=self.hnsw_ef or None,
                exact=exact,
                quantization=models.QuantizationSearchParams(
                    ignore=exact, rescore=not exact, oversampling=None if exact else self.oversampling
                ),
            )
            if self.kind == "server"
            else None
        )
        out: list[list[Hit]] = []
        for start in range(0, len(queries), _QUERY_BATCH):
            requests = [
                models.QueryRequest(
                    query=q.tolist(), limit=k, filter=qdrant_filter, params=params, with_payload=with_payload
                )
                for q in queries[start : start + _QUERY_BATCH]
            ]
            responses = self._call(
                "query_batch_points", self.client.query_batch_points, self.collection, requests=requests
            )
            out.extend(
                [Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in responses
            )
        return out

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[Exported]:
        """Every point in id order, ``batch`` at a time."""
        dim = self.dimension()
        if dim is None:
            return
        offset: Any = None
        while True:
            records, offset = self._call(
                "scroll",
                self.client.scroll,
                self.collection,
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            if records:
                width = dim if with_vectors else 0
                vectors = (
                    np.asarray([r.vector for r in records], dtype=np.float32)
                    if with_vectors
                    else np.zeros((len(records), 0), np.float32)
                )
                yield Exported(
                    ids=np.fromiter((int(r.id) for r in records), np.int64, len(records)),
                    vectors=vectors.reshape(len(records), width),
                    payloads=[dict(r.payload or {}) for r in records],
                )
            if offset is None:
                return

    def export(self) -> Exported:
        """Every point with its vector and payload, ordered by id."""
        return stack_exported(list(self.scroll(batch=2048)), self.dimension() or 0)

    def snapshot(self, path: Path) -> Path:
        """Write a snapshot of the collection to ``path`` (a file, or a folder to write into).

        On a server this is Qdrant's own collection snapshot, downloaded; local mode has no
        snapshots, so it writes the portable archive of :func:`iris.store.copy.write_archive`.
        """
        self._require()
        path = Path(path)
        if self.kind != "server":
            from iris.store.copy import write_archive

            target = path / f"{self.collection}.archive.npz" if path.is_dir() else path
            return write_archive(self, target)
        description = self._call("create_snapshot", self.client.create_snapshot, self.collection, wait=True)
        if description is None:
            raise StoreError(f"Qdrant {self.location} returned no snapshot for {self.collection!r}")
        target = path / description.name if path.is_dir() else path
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self._url}/collections/{self.collection}/snapshots/{description.name}"
        headers = {"api-key": self._api_key} if self._api_key else {}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with (
                os.fdopen(fd, "wb") as out,
                httpx.stream("GET", url, headers=headers, timeout=600) as response,
            ):
                if response.status_code != 200:
                    raise StoreError(f"downloading snapshot {url}: HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    out.write(chunk)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target
