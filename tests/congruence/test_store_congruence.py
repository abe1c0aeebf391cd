"""Qdrant Edge and qdrant-client's local mode must give the same answers.

Every scenario of ``store_scenarios`` runs on a fresh store of each kind; results must be
equal (ids, payloads, order) with scores and vectors within 1e-5. Small data keep Edge
below its HNSW indexing threshold, and the kNN scenarios ask for exact search, so no
approximation can make the stores differ; HNSW is compared on its own below.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from store_scenarios import SCENARIOS, Data, assert_same, digits_data

from iris.store import EdgeStore, Filter, ServerStore


@pytest.fixture(scope="module")
def data() -> Data:
    return digits_data()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeStore]:
    store = EdgeStore(tmp_path / "qdrant", collection="congruence")
    yield store
    store.close()


@pytest.fixture
def local() -> Iterator[ServerStore]:
    # In memory: local mode on disk is the same code plus SQLite, and 10x slower.
    store = ServerStore.local(":memory:", collection="congruence")
    yield store
    store.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_edge_and_local_mode_agree(name: str, edge: EdgeStore, local: ServerStore, data: Data) -> None:
    scenario = SCENARIOS[name]
    assert_same(scenario(edge, data), scenario(local, data), where=name)


def test_scenarios_see_real_differences(edge: EdgeStore, data: Data) -> None:
    """The comparison is not vacuous: a changed payload or score is caught."""
    result = SCENARIOS["knn_filtered_exact"](edge, data)
    assert all(len(row) == 7 for row in result["labeled"])
    assert all(hit[2]["has_label"] for row in result["labeled"] for hit in row)
    tampered = {**result, "labeled": [[(i, s + 1e-3, p) for i, s, p in row] for row in result["labeled"]]}
    with pytest.raises(AssertionError):
        assert_same(result, tampered)


def test_hnsw_matches_exact_search(tmp_path: Path, data: Data) -> None:
    """Above Edge's indexing threshold HNSW is built; its answers match exact search."""
    rng = np.random.default_rng(1)
    n, dim = 4_000, 64
    centres = rng.normal(size=(40, dim))
    vectors = centres[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    payloads = [{"split": "gt" if i % 5 == 0 else "pool", "has_label": i % 5 == 0} for i in range(n)]
    queries = vectors[rng.choice(n, 200, replace=False)]
    with EdgeStore(tmp_path / "q", collection="hnsw", indexing_threshold_kb=100) as store:
        store.upsert(np.arange(n), vectors, payloads)
        for flt in (None, Filter(must={"has_label": True})):
            approx = store.query_batch(queries, k=10, flt=flt)
            exact = store.query_batch(queries, k=10, flt=flt, exact=True)
            recall = np.mean(
                [len({h.id for h in a} & {h.id for h in e}) / 10 for a, e in zip(approx, exact, strict=True)]
            )
            assert recall >= 0.98, f"HNSW recall {recall:.3f} with filter {flt}"
        assert store._handle is not None
        assert store._handle.shard.info().indexed_vectors_count == n, "HNSW was not built"
