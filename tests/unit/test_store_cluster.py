"""A distributed Qdrant: the server store creates collections with the cluster settings.

qdrant-client's local mode accepts and ignores ``shard_number``/``replication_factor``,
so two tests look where the settings go: a spy on the client's ``create_collection``,
and a small fake Qdrant HTTP server that records the request the real client sends
(the same JSON a cluster would receive) and answers the cluster-info call that
``iris store info`` reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient, models

from iris.cli import main
from iris.config import load_settings
from iris.errors import ConfigError
from iris.store import EdgeStore, ServerStore, open_store
from iris.store.copy import describe
from iris.workdir import Workdir

CLUSTER_ENV = {
    "IRIS_STORE_SHARDS": "3",
    "IRIS_STORE_REPLICATION_FACTOR": "2",
    "IRIS_STORE_WRITE_CONSISTENCY": "2",
}


def test_open_store_passes_the_cluster_settings_to_create_collection(workdir: Workdir) -> None:
    settings = load_settings(workdir.root, environ={"IRIS_QDRANT_URL": ":memory:", **CLUSTER_ENV})
    assert (settings.store.shards, settings.store.replication_factor) == (3, 2)
    calls: list[dict[str, Any]] = []
    with open_store(workdir, settings) as store:
        assert isinstance(store, ServerStore)
        original = store.client.create_collection

        def spy(name: str, **kwargs: Any) -> Any:
            calls.append({"name": name, **kwargs})
            return original(name, **kwargs)

        store.client.create_collection = spy  # type: ignore[method-assign]
        store.upsert([1, 2], np.eye(2, 4, dtype=np.float32), [{"split": "pool"}] * 2)
        assert store.count() == 2
    assert len(calls) == 1
    call = calls[0]
    assert (call["shard_number"], call["replication_factor"], call["write_consistency_factor"]) == (3, 2, 2)
    assert call["vectors_config"].size == 4


def test_defaults_create_one_shard_one_copy(workdir: Workdir) -> None:
    settings = load_settings(workdir.root, environ={"IRIS_QDRANT_URL": ":memory:"})
    with open_store(workdir, settings) as store:
        assert isinstance(store, ServerStore)
        assert (store.shards, store.replication_factor, store.write_consistency) == (1, 1, 1)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"shards": 0}, "store.shards: got 0"),
        ({"replication_factor": 0, "write_consistency": 0}, "store.replication_factor: got 0"),
        ({"replication_factor": 2, "write_consistency": 3}, "expected <= store.replication_factor=2"),
    ],
)
def test_bad_cluster_settings_are_refused(layout: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerStore.local(":memory:", **layout)


# ---------------------------------------------------------------- a fake Qdrant server


def _collection_info(shards: int, replication: int, consistency: int) -> dict[str, Any]:
    """A CollectionInfo as a server returns it, made by qdrant-client's own local mode."""
    client = QdrantClient(location=":memory:")
    client.create_collection("c", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    info = client.get_collection("c").model_dump(mode="json", exclude_none=True)
    client.close()
    info["config"]["params"].update(
        shard_number=shards, replication_factor=replication, write_consistency_factor=consistency
    )
    return info


class FakeQdrant:
    """Records every request; knows one collection once it has been created."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.created: dict[str, Any] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _answer(self, result: Any, status: int = 200) -> None:
                body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?")[0]
                fake.requests.append((method, path, body))
                parts = path.strip("/").split("/")
                if parts[-1] == "exists":
                    self._answer({"exists": fake.created is not None})
                elif method == "PUT" and len(parts) == 2:
                    fake.created = body
                    self._answer(True)
                elif parts[-1] == "index":
                    self._answer({"operation_id": 0, "status": "completed"})
                elif parts[-1] == "cluster":
                    self._answer(fake.cluster_info())
                elif method == "GET" and len(parts) == 2:
                    self._answer(fake.collection_info())
                elif parts[-1] == "count":
                    self._answer({"count": 0})
                else:
                    self._answer(None, status=404)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def collection_info(self) -> dict[str, Any]:
        assert self.created is not None
        return _collection_info(
            self.created["shard_number"],
            self.created["replication_factor"],
            self.created["write_consistency_factor"],
        )

    def cluster_info(self) -> dict[str, Any]:
        # Three peers: this one holds shard 0; each shard has replication_factor copies.
        assert self.created is not None
        shards, copies = self.created["shard_number"], self.created["replication_factor"]
        local = [{"shard_id": 0, "points_count": 0, "state": "Active"}]
        remote = [
            {"shard_id": s, "peer_id": 100 + c, "state": "Active"}
            for s in range(shards)
            for c in range(copies)
        ]
        remote = remote[1:]  # the first copy of shard 0 is the local one
        return {
            "peer_id": 1,
            "shard_count": shards,
            "local_shards": local,
            "remote_shards": remote,
            "shard_transfers": [],
        }


@pytest.fixture
def fake_qdrant() -> Iterator[FakeQdrant]:
    fake = FakeQdrant()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_server_request_carries_shards_replicas_and_consistency(fake_qdrant: FakeQdrant) -> None:
    with ServerStore.connect(
        fake_qdrant.url, collection="iris", shards=3, replication_factor=2, write_consistency=2
    ) as store:
        store.ensure_collection(dim=8)
        layout = store.layout()
    creates = [(m, p, b) for m, p, b in fake_qdrant.requests if m == "PUT" and p == "/collections/iris"]
    assert len(creates) == 1
    body = creates[0][2]
    assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (3, 2, 2)
    assert body["vectors"] == {"size": 8, "distance": "Cosine"}
    assert layout["shards"] == 3 and layout["replication_factor"] == 2 and layout["write_consistency"] == 2
    assert layout["replicas"] == {
        "0": ["Active", "Active"],
        "1": ["Active", "Active"],
        "2": ["Active", "Active"],
    }


def test_store_info_shows_shards_and_replicas(fake_qdrant: FakeQdrant, workdir: Workdir) -> None:
    with ServerStore.connect(
        fake_qdrant.url, collection="iris", shards=2, replication_factor=3, write_consistency=1
    ) as store:
        store.ensure_collection(dim=8)
    result = CliRunner().invoke(
        main, ["--workdir", str(workdir.root), "store", "info", "--qdrant-url", fake_qdrant.url]
    )
    assert result.exit_code == 0, result.output
    assert "2 shard(s), replication factor 3, write consistency 1" in result.output
    assert "shard 0: 3 replica(s) (Active, Active, Active)" in result.output
    assert "shard 1: 3 replica(s)" in result.output


def test_embedded_store_reports_one_shard_one_copy(workdir: Workdir) -> None:
    with EdgeStore(workdir.qdrant) as store:
        assert describe(store)["shards"] is None  # no collection yet
        store.upsert([7], np.ones((1, 3), np.float32), [{"split": "gt"}])
        info = describe(store)
    assert (info["shards"], info["replication_factor"], info["write_consistency"]) == (1, 1, 1)


def test_the_server_collection_gets_the_settings_quantization(
    fake_qdrant: FakeQdrant, workdir: Workdir
) -> None:
    """`[store] quantization` (int8 by default) reaches the server's create request; `none` sends none."""
    for value, expected in (
        ("int8", {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}),
        ("none", None),
    ):
        fake_qdrant.created = None
        settings = load_settings(
            workdir.root, environ={"IRIS_QDRANT_URL": fake_qdrant.url, "IRIS_STORE_QUANTIZATION": value}
        )
        with open_store(workdir, settings) as store:
            assert isinstance(store, ServerStore)
            store.ensure_collection(dim=8)
        assert fake_qdrant.created is not None
        assert fake_qdrant.created.get("quantization_config") == expected
