"""The store against a real Qdrant server at ``IRIS_QDRANT_URL`` (``docker compose up qdrant``).

The congruence scenarios run on Qdrant Edge and on the server and must agree; then what
only a server does: payload indexes, HNSW at size, a downloaded snapshot, and
``iris store copy-to-server``. Each test works in its own collection and deletes it.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "congruence"))

from store_scenarios import SCENARIOS, Data, assert_same, digits_data

from iris.cli import main
from iris.store import EdgeStore, Filter, ServerStore
from iris.workdir import Workdir

URL = os.environ.get("IRIS_QDRANT_URL", "")
API_KEY = os.environ.get("IRIS_QDRANT_API_KEY", "")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not URL.startswith(("http://", "https://")), reason="needs a Qdrant server at IRIS_QDRANT_URL"
    ),
]


@pytest.fixture(scope="module")
def data() -> Data:
    return digits_data()


@pytest.fixture
def collection() -> Iterator[str]:
    name = f"iris-test-{uuid.uuid4().hex[:12]}"
    yield name
    cleanup = ServerStore.connect(URL, api_key=API_KEY, collection=name)
    if cleanup.client.collection_exists(name):
        cleanup.client.delete_collection(name)
    cleanup.close()


@pytest.fixture
def server(collection: str) -> Iterator[ServerStore]:
    store = ServerStore.connect(URL, api_key=API_KEY, collection=collection)
    yield store
    store.close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeStore]:
    store = EdgeStore(tmp_path / "qdrant", collection="congruence")
    yield store
    store.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_edge_and_server_agree(name: str, edge: EdgeStore, server: ServerStore, data: Data) -> None:
    scenario = SCENARIOS[name]
    assert_same(scenario(edge, data), scenario(server, data), where=name)


def test_server_creates_payload_indexes(server: ServerStore, collection: str) -> None:
    server.ensure_collection(dim=16)
    schema = server.client.get_collection(collection).payload_schema
    assert {"split", "status", "has_label", "label"} <= set(schema)


def test_server_hnsw_recall(server: ServerStore) -> None:
    rng = np.random.default_rng(2)
    n, dim = 20_000, 128
    vectors = rng.normal(size=(40, dim))[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    server.upsert(np.arange(n), vectors, [{"split": "pool", "has_label": i % 4 == 0} for i in range(n)])
    queries = vectors[:200]
    flt = Filter(must={"has_label": True})
    approx = server.query_batch(queries, k=10, flt=flt)
    exact = server.query_batch(queries, k=10, flt=flt, exact=True)
    recall = np.mean(
        [len({h.id for h in a} & {h.id for h in e}) / 10 for a, e in zip(approx, exact, strict=True)]
    )
    assert recall >= 0.98


def test_server_snapshot_is_downloaded(server: ServerStore, data: Data, tmp_path: Path) -> None:
    server.upsert(data.ids, data.vectors, data.payloads)
    written = server.snapshot(tmp_path)
    assert written.parent == tmp_path and written.stat().st_size > 10_000
    assert tarfile.is_tarfile(written)


def test_copy_to_server_command(workdir: Workdir, collection: str, data: Data) -> None:
    with EdgeStore(workdir.qdrant) as edge:
        edge.upsert(data.ids, data.vectors, data.payloads)
    args = [
        "--workdir",
        str(workdir.root),
        "store",
        "copy-to-server",
        "--url",
        URL,
        "--collection",
        collection,
    ]
    if API_KEY:
        args += ["--api-key", API_KEY]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["target_count"] == len(data.ids)
    with (
        EdgeStore(workdir.qdrant) as edge,
        ServerStore.connect(URL, api_key=API_KEY, collection=collection) as srv,
    ):
        a, b = edge.export(), srv.export()
        assert a.ids.tolist() == b.ids.tolist() and a.payloads == b.payloads
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
