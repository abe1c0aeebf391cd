"""Qdrant Edge specifics: persistence, HNSW kept across reopen, the folder lock, snapshots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iris.errors import DimensionError, StageOrderError, StoreError
from iris.store import EdgeStore, Filter
from iris.store.edge import META_FILE, restore_snapshot


def _points(n: int = 500, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    payloads = [{"split": "gt" if i % 5 == 0 else "pool", "has_label": i % 5 == 0, "n": i} for i in range(n)]
    return ids, vectors, payloads


def test_points_survive_close_and_reopen(tmp_path: Path) -> None:
    ids, vectors, payloads = _points()
    with EdgeStore(tmp_path) as store:
        store.upsert(ids, vectors, payloads)
        store.set_payload({int(ids[0]): {"status": "auto"}})
        before = store.export()
    with EdgeStore(tmp_path) as store:
        after = store.export()
        assert store.dimension() == 32 and store.distance() == "cosine"
        assert store.count(Filter(must={"has_label": True})) == 100
    assert after.ids.tolist() == before.ids.tolist() == ids.tolist()
    np.testing.assert_allclose(after.vectors, before.vectors)
    assert after.payloads == before.payloads and after.payloads[0]["status"] == "auto"


def test_hnsw_is_built_once_and_kept(tmp_path: Path) -> None:
    ids, vectors, payloads = _points(3000, 64)
    with EdgeStore(tmp_path, indexing_threshold_kb=100) as store:
        store.upsert(ids, vectors, payloads)
        assert store._handle is not None and store._handle.dirty
    reopened = EdgeStore(tmp_path)
    try:
        assert reopened._handle is not None
        assert not reopened._handle.dirty, "closing built the index; opening must not rebuild it"
        assert reopened._handle.shard.info().indexed_vectors_count == 3000
        hits = reopened.query_batch(vectors[:50], k=5)
        assert [row[0].id for row in hits] == ids[:50].tolist()
    finally:
        reopened.close()


def test_stores_in_one_process_share_the_shard(tmp_path: Path) -> None:
    ids, vectors, payloads = _points(50)
    first = EdgeStore(tmp_path)
    first.upsert(ids, vectors, payloads)
    second = EdgeStore(tmp_path)
    assert second.count() == 50
    first.close()
    assert second.count() == 50, "closing one store must leave the other usable"
    second.close()
    with pytest.raises(StoreError, match="was closed"):
        second.count()


def test_another_process_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    ids, vectors, payloads = _points(20)
    with EdgeStore(tmp_path) as store:
        store.upsert(ids, vectors, payloads)
        code = (
            "import sys; from pathlib import Path; from iris.store import EdgeStore\n"
            "from iris.errors import StoreError\n"
            f"try:\n    EdgeStore(Path({str(tmp_path)!r}))\n"
            "except StoreError as e:\n    print(e); sys.exit(3)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "open in another process" in done.stdout


def test_dimension_is_recorded_and_checked_after_reopen(tmp_path: Path) -> None:
    with EdgeStore(tmp_path, collection="c") as store:
        store.ensure_collection(dim=12, distance="dot")
    assert (tmp_path / "c" / META_FILE).is_file()
    with EdgeStore(tmp_path, collection="c") as store:
        store.ensure_collection(dim=12, distance="dot")
        with pytest.raises(DimensionError, match="holds 12-d dot vectors; asked for 512-d cosine"):
            store.ensure_collection(dim=512)
        with pytest.raises(DimensionError, match="13 dimensions, the collection has 12"):
            store.upsert([1], np.ones((1, 13), np.float32), [{}])


def test_dot_and_euclid_scores(tmp_path: Path) -> None:
    vectors = np.array([[1, 0], [0, 2], [3, 3]], np.float32)
    with EdgeStore(tmp_path, collection="dot") as store:
        store.ensure_collection(dim=2, distance="dot")
        store.upsert([1, 2, 3], vectors, [{}, {}, {}])
        hits = store.query_batch(np.array([[1, 1]], np.float32), k=3, exact=True)[0]
        assert [(h.id, h.score) for h in hits] == [(3, 6.0), (2, 2.0), (1, 1.0)]
    with EdgeStore(tmp_path, collection="euclid") as store:
        store.ensure_collection(dim=2, distance="euclid")
        store.upsert([1, 2, 3], vectors, [{}, {}, {}])
        hits = store.query_batch(np.array([[1, 0]], np.float32), k=2, exact=True)[0]
        assert [h.id for h in hits] == [1, 2]
        assert hits[0].score == pytest.approx(0.0) and hits[1].score == pytest.approx(np.sqrt(5))


def test_snapshot_restores_to_the_same_points(tmp_path: Path) -> None:
    ids, vectors, payloads = _points(300)
    with EdgeStore(tmp_path / "a") as store:
        store.upsert(ids, vectors, payloads)
        written = store.snapshot(tmp_path / "out" / "s.tar")
        original = store.export()
    assert written == tmp_path / "out" / "s.tar"
    restored = restore_snapshot(written, tmp_path / "b", collection="iris")
    try:
        copy = restored.export()
        assert copy.ids.tolist() == original.ids.tolist() and copy.payloads == original.payloads
        np.testing.assert_allclose(copy.vectors, original.vectors)
        assert restored.dimension() == 32
        assert restored.count(Filter(must={"split": "gt"})) == 60
    finally:
        restored.close()
    with pytest.raises(StoreError, match="already holds a collection"):
        restore_snapshot(written, tmp_path / "b", collection="iris")
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(StoreError, match="cannot unpack snapshot"):
        restore_snapshot(tmp_path / "junk.tar", tmp_path / "c")


def test_missing_collection(tmp_path: Path) -> None:
    with EdgeStore(tmp_path) as store:
        assert store.dimension() is None and store.count() == 0 and store.ids() == set()
        assert list(store.scroll()) == []
        with pytest.raises(StageOrderError, match="run `iris embed` first"):
            store.snapshot(tmp_path / "x.tar")
    with pytest.raises(StoreError, match="plain, non-empty folder name"):
        EdgeStore(tmp_path, collection="../elsewhere")


def test_a_killed_writer_leaves_a_loadable_store_with_what_was_flushed(tmp_path: Path) -> None:
    """No WAL: what set_payload (or the timed flush) wrote survives a crash; the rest is redone."""
    code = (
        "import os, numpy as np; from pathlib import Path; from iris.store import EdgeStore\n"
        f"s = EdgeStore(Path({str(tmp_path)!r}))\n"
        "v = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)\n"
        "s.upsert(np.arange(300), v[:300], [{'split': 'pool'}] * 300)\n"
        "s.set_payload({7: {'status': 'auto'}})\n"
        "s.upsert(np.arange(300, 500), v[300:], [{'split': 'pool'}] * 200)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with EdgeStore(tmp_path) as store:
        assert 300 <= store.count() <= 500
        assert store.ids(Filter(must={"status": "auto"})) == {7}
        store.upsert(np.arange(300, 500), np.ones((200, 16), np.float32), [{"split": "pool"}] * 200)
    with EdgeStore(tmp_path) as store:
        assert store.count() == 500


def test_set_payload_skips_writes_that_change_nothing(tmp_path: Path) -> None:
    # A payload write moves points out of their HNSW segment (a re-index as costly as
    # the first build), so an update that leaves the payload as it is must not be sent.
    vectors = np.eye(4, 8, dtype=np.float32)
    with EdgeStore(tmp_path) as store:
        store.upsert([1, 2, 3, 4], vectors, [{"split": "pool", "status": "auto", "label": 1}] * 4)
        store.optimize()
        assert store._handle is not None and not store._handle.dirty
        store.set_payload({1: {"status": "auto"}, 2: {"status": "auto", "label": 1}})
        assert not store._handle.dirty  # nothing changed, nothing written
        store.set_payload({1: {"label": True}})  # True == 1 in Python, not in a payload
        assert store._handle.dirty
        store.set_payload({3: {"status": "neighbour"}, 4: {"status": "auto"}})
        got = {i: p for i, p, _ in store.retrieve([1, 2, 3, 4])}
    assert got[1]["label"] is True and got[2]["label"] == 1
    assert [got[i]["status"] for i in (1, 2, 3, 4)] == ["auto", "auto", "neighbour", "auto"]


def test_int8_quantization_is_in_the_shard_and_exact_search_reads_the_floats(tmp_path: Path) -> None:
    """An int8 store keeps the quantization in its config; exact hits equal a float store's,
    with float scores, and its HNSW hits, rescored, find the true nearest of each query."""
    import json

    ids, vectors, payloads = _points(n=3000, dim=32)
    stores = {q: EdgeStore(tmp_path / q, quantization=q, indexing_threshold_kb=10) for q in ("int8", "none")}
    for store in stores.values():
        store.upsert(ids, vectors, payloads)
    config = json.loads((stores["int8"].path / "edge_config.json").read_text())
    assert "scalar" in json.dumps(config.get("quantization_config")).lower()
    assert not json.loads((stores["none"].path / "edge_config.json").read_text()).get("quantization_config")
    queries = vectors[:50]
    exact = {q: s.query_batch(queries, k=5, exact=True) for q, s in stores.items()}
    assert [[h.id for h in row] for row in exact["int8"]] == [[h.id for h in row] for row in exact["none"]]
    truth = vectors[:50] @ vectors.T
    for row, hits in enumerate(exact["int8"]):
        assert hits[0].score == pytest.approx(float(truth[row].max()), abs=1e-5)  # a float score, not int8
    approximate = stores["int8"].query_batch(queries, k=5)
    assert sum(hits[0].id == ids[row] for row, hits in enumerate(approximate)) >= 49
    for store in stores.values():
        store.close()


def test_exact_searches_give_way_to_hnsw_past_the_limit(tmp_path: Path) -> None:
    from iris.stagekit import exact_search

    ids, vectors, payloads = _points(n=100)
    with EdgeStore(tmp_path) as store:
        store.upsert(ids, vectors, payloads)
        assert exact_search(store, True, 100) and exact_search(store, True, 0)
        assert not exact_search(store, True, 99)
        assert not exact_search(store, False, 1000)  # HNSW asked for: HNSW at any size
