"""A sharded, replicated collection on a real 3-node Qdrant (``docker compose --profile cluster``).

Runs where ``IRIS_QDRANT_CLUSTER_URL`` points at a node of that cluster (CI's compose job).
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from iris.store import Filter, ServerStore
from iris.store.copy import describe

URL = os.environ.get("IRIS_QDRANT_CLUSTER_URL", "")
API_KEY = os.environ.get("IRIS_QDRANT_API_KEY", "")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not URL.startswith(("http://", "https://")),
        reason="needs a 3-node Qdrant cluster at IRIS_QDRANT_CLUSTER_URL (docker compose --profile cluster)",
    ),
]


def test_collection_is_sharded_and_replicated_over_the_cluster() -> None:
    name = f"iris-cluster-{uuid.uuid4().hex[:12]}"
    store = ServerStore.connect(
        URL, api_key=API_KEY, collection=name, shards=3, replication_factor=2, write_consistency=2
    )
    try:
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(600, 16)).astype(np.float32)
        payloads = [{"split": "pool" if i % 3 else "gt", "has_label": i % 3 == 0} for i in range(600)]
        store.upsert(np.arange(1, 601), vectors, payloads)
        assert store.count() == 600
        assert store.count(Filter(must={"split": "gt"})) == 200
        info = describe(store)
        assert (info["shards"], info["replication_factor"], info["write_consistency"]) == (3, 2, 2)
        assert sorted(info["replicas"]) == ["0", "1", "2"]
        assert all(len(states) == 2 for states in info["replicas"].values())
        hits = store.query_batch(vectors[:5], k=1, exact=True)
        assert [h[0].id for h in hits] == [1, 2, 3, 4, 5]
    finally:
        if store.client.collection_exists(name):
            store.client.delete_collection(name)
        store.close()
