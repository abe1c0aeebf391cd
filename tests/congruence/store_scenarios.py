"""The operations every store must agree on, run by the congruence and integration suites.

Each scenario takes a fresh, empty store and the shared data, does something, and returns
a plain value; the suites run it on Qdrant Edge and on another implementation
(qdrant-client local mode, or a real server) and compare the results with :func:`assert_same`.
The data are scikit-learn's digits, L2-normalised, duplicates removed (so no two
neighbours tie), with sparse, non-contiguous ids like iris's hashed image ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.datasets import load_digits

from iris.errors import DimensionError, StageOrderError, StoreError
from iris.store import Filter, Hit, VectorStore


@dataclass(frozen=True)
class Data:
    ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]
    payloads: list[dict[str, Any]]
    queries: npt.NDArray[np.float32]


def digits_data(n: int = 800, n_queries: int = 12) -> Data:
    """``n`` digits as a small pool: every 8th image ground truth, every 11th test, the rest pool."""
    digits = load_digits()
    x = digits.data.astype(np.float32)
    _, first = np.unique(x, axis=0, return_index=True)
    keep = np.sort(first)[:n]
    x, y = x[keep], digits.target[keep]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = (np.arange(len(x), dtype=np.int64) * 7919 + 3) % (2**40)
    payloads: list[dict[str, Any]] = []
    for i, label in enumerate(y):
        if i % 8 == 0:
            payloads.append(
                {
                    "split": "gt",
                    "status": "gt",
                    "label": int(label % 2),
                    "has_label": True,
                    "source": f"d/{i}.png",
                }
            )
        elif i % 11 == 0:
            payloads.append({"split": "test", "status": "test", "has_label": False, "source": f"d/{i}.png"})
        else:
            payloads.append(
                {"split": "pool", "status": "unlabeled", "has_label": False, "source": f"d/{i}.png"}
            )
    rng = np.random.default_rng(0)
    noisy = x[rng.choice(len(x), n_queries, replace=False)] + 0.05 * rng.normal(size=(n_queries, x.shape[1]))
    queries = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    return Data(ids, x, payloads, queries)


def _load(store: VectorStore, data: Data) -> None:
    store.ensure_collection(dim=data.vectors.shape[1])
    store.upsert(data.ids, data.vectors, data.payloads)


def _hits(rows: list[list[Hit]]) -> list[list[tuple[int, float, dict[str, Any]]]]:
    return [[(h.id, h.score, h.payload) for h in row] for row in rows]


def _exported(store: VectorStore) -> dict[str, Any]:
    exported = store.export()
    return {"ids": exported.ids.tolist(), "vectors": exported.vectors, "payloads": exported.payloads}


# ------------------------------------------------------------------------- scenarios


def upsert_idempotent(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    first = _exported(store)
    # The same points again, and half of them a third time in another order: nothing changes.
    store.upsert(data.ids, data.vectors, data.payloads)
    half = np.arange(0, len(data.ids), 2)[::-1]
    store.upsert(data.ids[half], data.vectors[half], [data.payloads[i] for i in half])
    again = _exported(store)
    assert again["ids"] == first["ids"]
    return {"count": store.count(), "export": again, "dim": store.dimension()}


def upsert_replaces(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    changed = data.ids[:5]
    # Point i moves next to point i+5 (not onto it: a tie would leave the order to chance).
    nudged = data.vectors[5:10] + 0.02 * data.vectors[10:15]
    moved = (nudged / np.linalg.norm(nudged, axis=1, keepdims=True)).astype(np.float32)
    store.upsert(changed, moved, [{"split": "pool", "status": "crowd"}] * 5)
    return {
        "count": store.count(),
        "points": store.retrieve(changed.tolist(), with_vectors=True),
        "nearest": _hits(store.query_batch(moved, k=2, exact=True)),
    }


def knn_filtered_exact(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    filters = {
        "none": None,
        "labeled": Filter(must={"has_label": True}),
        "gt_or_test": Filter(must={"split": ["gt", "test"]}),
        "not_pool": Filter(must_not={"split": "pool"}),
        "label_1": Filter(must={"label": 1}),
        "labeled_not_test": Filter(must={"has_label": [True]}, must_not={"status": ["test", "crowd"]}),
        "no_label_key": Filter(must={"label": None}, must_not={"split": "test"}),
    }
    return {
        name: _hits(store.query_batch(data.queries, k=7, flt=flt, exact=True))
        for name, flt in filters.items()
    }


def knn_k_larger_than_matches(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    only = Filter(must={"source": ["d/0.png", "d/8.png", "d/16.png"]})
    return _hits(store.query_batch(data.queries[:3], k=10, flt=only, exact=True))


def payload_merge(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    pool = [int(i) for i, p in zip(data.ids, data.payloads, strict=True) if p["split"] == "pool"]
    updates: dict[int, dict[str, Any]] = {}
    for n, point_id in enumerate(pool[:300]):
        status = "auto" if n % 3 else "problematic"
        updates[point_id] = {"status": status, "pseudo_label": n % 2}
    store.set_payload(updates)
    store.set_payload({pool[0]: {"label": 1, "has_label": True, "status": "crowd"}})
    return {
        "points": store.retrieve(pool[:10]),
        "by_status": {
            s: store.count(Filter(must={"status": s})) for s in ("auto", "problematic", "crowd", "unlabeled")
        },
        "pseudo_1": sorted(store.ids(Filter(must={"pseudo_label": 1}))),
        "labeled_now": sorted(store.ids(Filter(must={"has_label": True}))),
        "knn_labeled": _hits(
            store.query_batch(data.queries[:5], k=5, flt=Filter(must={"has_label": True}), exact=True)
        ),
    }


def counts_and_ids(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    filters = [
        None,
        Filter(must={"split": "gt"}),
        Filter(must={"split": ["pool", "test"]}),
        Filter(must_not={"split": ["pool", "test"]}),
        Filter(must={"has_label": False}),
        Filter(must={"has_label": [True, False]}),
        Filter(must_not={"has_label": [True, False]}),
        Filter(must={"label": None}),
        Filter(must_not={"label": None}),
        Filter(must={"split": []}),
    ]
    return [(store.count(f), sorted(store.ids(f))) for f in filters]


def retrieve_order(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    asked = [int(data.ids[9]), 123456789, int(data.ids[2]), int(data.ids[500])]
    return {"plain": store.retrieve(asked), "vectors": store.retrieve(asked, with_vectors=True)}


def scroll_batches(store: VectorStore, data: Data) -> Any:
    _load(store, data)
    batches = list(store.scroll(batch=256))
    sizes = [len(b.ids) for b in batches]
    ids = np.concatenate([b.ids for b in batches])
    assert (np.diff(ids) > 0).all(), "scroll must be in id order"
    no_vectors = list(store.scroll(batch=1000, with_vectors=False))
    assert all(b.vectors.shape == (len(b.ids), 0) for b in no_vectors)
    return {"sizes": sizes, "ids": ids.tolist(), "export": _exported(store)}


def empty_collection(store: VectorStore, data: Data) -> Any:
    before = {"dim": store.dimension(), "count": store.count(), "ids": store.ids()}
    assert before["count"] == 0
    store.ensure_collection(dim=data.vectors.shape[1])
    return {
        "before": before,
        "dim": store.dimension(),
        "count": store.count(),
        "hits": _hits(store.query_batch(data.queries[:2], k=3, exact=True)),
        "export": _exported(store),
    }


def errors(store: VectorStore, data: Data) -> Any:
    seen: list[str] = []
    # Reading a collection that does not exist names the stage to run.
    with pytest.raises(StageOrderError):
        store.retrieve([1])
    seen.append("missing-collection")
    _load(store, data)
    with pytest.raises(DimensionError, match=r"64.*32|32.*64"):
        store.ensure_collection(dim=32)
    with pytest.raises(DimensionError, match="euclid"):
        store.ensure_collection(dim=64, distance="euclid")
    with pytest.raises(DimensionError):
        store.upsert([1], np.ones((1, 65), np.float32), [{}])
    with pytest.raises(DimensionError):
        store.query_batch(np.ones((2, 63), np.float32), k=3)
    seen.append("dimension")
    with pytest.raises(StoreError, match="not in collection"):
        store.set_payload({int(data.ids[0]): {"status": "auto"}, 999_999_999_999: {"status": "auto"}})
    assert store.retrieve([int(data.ids[0])])[0][1]["status"] == "gt", "a refused update must write nothing"
    seen.append("missing-id")
    with pytest.raises(StoreError, match="more than once"):
        store.upsert([5, 5], np.ones((2, 64), np.float32), [{}, {}])
    with pytest.raises(StoreError, match=">= 0"):
        store.upsert([-1], np.ones((1, 64), np.float32), [{}])
    with pytest.raises(StoreError, match="NaN"):
        store.upsert([7], np.full((1, 64), np.nan, np.float32), [{}])
    with pytest.raises(StoreError, match="k=0"):
        store.query_batch(data.queries[:1], k=0)
    with pytest.raises(StoreError, match="expected str, int"):
        store.count(Filter(must={"split": 1.5}))
    seen.append("bad-input")
    return seen


SCENARIOS: dict[str, Callable[[VectorStore, Data], Any]] = {
    f.__name__: f
    for f in (
        upsert_idempotent,
        upsert_replaces,
        knn_filtered_exact,
        knn_k_larger_than_matches,
        payload_merge,
        counts_and_ids,
        retrieve_order,
        scroll_batches,
        empty_collection,
        errors,
    )
}


def assert_same(left: Any, right: Any, *, where: str = "result", atol: float = 1e-5) -> None:
    """Equal structure and values; floats and arrays within ``atol`` (scores, vectors)."""
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        a, b = np.asarray(left), np.asarray(right)
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        np.testing.assert_allclose(a, b, atol=atol, err_msg=where)
    elif isinstance(left, float) or isinstance(right, float):
        assert left == pytest.approx(right, abs=atol), f"{where}: {left} != {right}"
    elif isinstance(left, dict) and isinstance(right, dict):
        assert left.keys() == right.keys(), f"{where}: keys {sorted(left)} != {sorted(right)}"
        for key in left:
            assert_same(left[key], right[key], where=f"{where}.{key}", atol=atol)
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        assert len(left) == len(right), f"{where}: length {len(left)} != {len(right)}"
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same(a, b, where=f"{where}[{i}]", atol=atol)
    else:
        assert left == right, f"{where}: {left!r} != {right!r}"
