"""Vector stores: Qdrant Edge embedded by default, a Qdrant server when asked.

>>> store = open_store(workdir, settings)           # edge under workdir/qdrant, or the server
>>> store.ensure_collection(dim=512)
>>> store.upsert(ids, vectors, payloads)
>>> hits = store.query_batch(queries, k=10, flt=Filter(must={"has_label": True}))
>>> store.close()

See :mod:`iris.store.base` for the interface and the payload keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iris.store.base import (
    INDEXED_KEYS,
    SPLITS,
    STATUSES,
    Distance,
    Exported,
    Filter,
    Hit,
    Payload,
    VectorStore,
)
from iris.store.edge import EdgeStore

if TYPE_CHECKING:
    from iris.config import Settings
    from iris.store.server import ServerStore
    from iris.workdir import Workdir

__all__ = [
    "INDEXED_KEYS",
    "SPLITS",
    "STATUSES",
    "Distance",
    "EdgeStore",
    "Exported",
    "Filter",
    "Hit",
    "Payload",
    "ServerStore",
    "VectorStore",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # qdrant-client takes seconds to import; only server users should pay for it.
    if name == "ServerStore":
        from iris.store.server import ServerStore

        return ServerStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(workdir: Workdir, settings: Settings, *, collection: str | None = None) -> VectorStore:
    """Open the store the settings ask for.

    The embedded Qdrant Edge store under ``workdir.qdrant`` by default; a Qdrant server when
    ``settings.store.kind == "server"`` or ``settings.store.url`` is set (``:memory:`` and
    ``local:PATH`` select qdrant-client's local mode). Close it when done (or use ``with``).

    Args:
        workdir: the work directory.
        settings: settings; ``[store]`` is read.
        collection: collection name instead of ``settings.store.collection``.

    Raises:
        ConfigError: the server store is asked for without a URL.
        StoreError: the store cannot be opened (locked by another process, unreachable server).
    """
    from iris.errors import ConfigError

    conf = settings.store
    name = collection or conf.collection
    if conf.kind == "server" or conf.url:
        from iris.store.server import ServerStore

        if not conf.url:
            raise ConfigError(
                "store.kind is 'server' but no URL is set; set IRIS_QDRANT_URL, [store] url or --qdrant-url"
            )
        return ServerStore.connect(
            conf.url,
            api_key=conf.api_key,
            collection=name,
            timeout_s=conf.timeout_s,
            hnsw_ef=conf.hnsw_ef,
            batch_size=conf.batch_size,
            shards=conf.shards,
            replication_factor=conf.replication_factor,
            write_consistency=conf.write_consistency,
            quantization=conf.quantization,
            oversampling=conf.oversampling,
        )
    return EdgeStore(
        workdir.qdrant,
        collection=name,
        hnsw_ef=conf.hnsw_ef,
        quantization=conf.quantization,
        oversampling=conf.oversampling,
    )
