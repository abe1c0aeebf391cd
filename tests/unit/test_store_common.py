"""Pieces both stores share: filters, open_store's choice, the portable archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iris.config import load_settings
from iris.errors import ConfigError, InputError, StoreError
from iris.store import EdgeStore, Filter, ServerStore, open_store
from iris.store.copy import copy_store, read_archive, write_archive
from iris.workdir import Workdir


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(must={"split": "gt"}), [(False, "split", "value", "gt")]),
        (Filter(must={"label": np.int8(1)}), [(False, "label", "value", 1)]),
        (Filter(must={"has_label": np.True_}), [(False, "has_label", "value", True)]),
        (Filter(must={"split": ("pool", "gt", "gt")}), [(False, "split", "any", ["gt", "pool"])]),
        (Filter(must_not={"label": None}), [(True, "label", "empty", None)]),
        (Filter(must={"has_label": [False]}), [(False, "has_label", "value", False)]),
        (Filter(must={"has_label": [True, False]}), []),
        (Filter(must_not={"has_label": [True, False]}), [(False, "has_label", "any", [])]),
    ],
)
def test_filter_conditions(flt: Filter, expected: list[tuple]) -> None:
    assert list(flt.conditions()) == expected


@pytest.mark.parametrize("value", [1.5, {"a": 1}, [1, "a", 2.5], [True, 1]])
def test_filter_rejects_values_qdrant_cannot_match(value: object) -> None:
    with pytest.raises(StoreError, match="filter on 'k'"):
        list(Filter(must={"k": value}).conditions())


def test_open_store_picks_edge_by_default(workdir: Workdir) -> None:
    store = open_store(workdir, load_settings(workdir.root, environ={}))
    try:
        assert isinstance(store, EdgeStore) and store.path == (workdir.qdrant / "iris").resolve()
    finally:
        store.close()
    other = open_store(workdir, load_settings(workdir.root, environ={}), collection="second")
    assert isinstance(other, EdgeStore) and other.collection == "second"
    other.close()


def test_open_store_picks_the_server_when_a_url_is_set(workdir: Workdir, tmp_path: Path) -> None:
    settings = load_settings(workdir.root, environ={"IRIS_QDRANT_URL": f"local:{tmp_path / 'srv'}"})
    store = open_store(workdir, settings)
    try:
        assert isinstance(store, ServerStore) and store.kind == "local"
        store.upsert([4], np.ones((1, 3), np.float32), [{"split": "gt"}])
        assert store.count() == 1
    finally:
        store.close()
    settings = load_settings(workdir.root, environ={"IRIS_STORE_KIND": "server"})
    with pytest.raises(ConfigError, match="no URL is set"):
        open_store(workdir, settings)


def test_archive_round_trip_and_local_mode_snapshot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payloads = [{"split": "pool", "i": i, "tags": ["a", "b"]} for i in range(40)]
    with ServerStore.local(":memory:") as store:
        store.upsert(np.arange(40) * 2, vectors, payloads)
        written = store.snapshot(tmp_path)
        assert written == tmp_path / "iris.archive.npz"
    exported, distance = read_archive(written)
    assert distance == "cosine" and exported.ids.tolist() == list(range(0, 80, 2))
    np.testing.assert_allclose(exported.vectors, vectors, atol=1e-6)
    assert exported.payloads == payloads
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(InputError, match="not an iris store archive"):
        read_archive(tmp_path / "bad.npz")


def test_copy_store_into_local_mode(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(120, 10)).astype(np.float32)
    with EdgeStore(tmp_path) as edge, ServerStore.local(":memory:") as local:
        edge.ensure_collection(dim=10, distance="euclid")
        edge.upsert(np.arange(120), vectors, [{"split": "pool", "i": i} for i in range(120)])
        report = copy_store(edge, local, batch=32)
        assert (report.copied, report.target_count, report.dim, report.distance) == (120, 120, 10, "euclid")
        assert local.distance() == "euclid"
        np.testing.assert_allclose(local.export().vectors, vectors, atol=1e-6)
        assert write_archive(local, tmp_path / "a.npz").is_file()


@pytest.mark.parametrize("kind", ["edge", "local"])
def test_numpy_payload_values_are_stored_as_plain_json(kind: str, tmp_path: Path) -> None:
    store = EdgeStore(tmp_path) if kind == "edge" else ServerStore.local(":memory:")
    try:
        payloads = [
            {"label": np.int8(i % 2), "has_label": np.bool_(True), "v": np.arange(2)} for i in range(4)
        ]
        store.upsert(np.arange(4, dtype=np.int64), np.eye(4, dtype=np.float32), payloads)
        store.set_payload({0: {"pseudo_label": np.int64(1)}})
        assert store.ids(Filter(must={"label": 1, "has_label": True})) == {1, 3}
        assert store.retrieve([0])[0][1] == {"label": 0, "has_label": True, "v": [0, 1], "pseudo_label": 1}
    finally:
        store.close()
