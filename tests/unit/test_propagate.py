"""Propagation: the numpy core (vote, k-fold CV) and the stage on a real embedded store."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import load_digits

from iris import tables
from iris.config import Settings
from iris.errors import ConfigError, PoolExhaustedError, StageOrderError
from iris.neighbours import Neighbours, assign_folds, distance_from_similarity, vote
from iris.propagate import cross_validate, propagate
from iris.store import Filter, open_store
from iris.tables import AGGREGATED, FINAL_LABELS, IMAGES, PSEUDOLABELS

# --------------------------------------------------------------------------- numpy core


def _neighbours(labels: np.ndarray, distance: np.ndarray) -> Neighbours:
    """Neighbour lists whose cosine distance is ``distance``."""
    return Neighbours(
        ids=np.arange(labels.size, dtype=np.int64).reshape(labels.shape),
        labels=labels.astype(np.int64),
        similarity=1.0 - distance,
    )


def test_vote_uniform_and_distance() -> None:
    nb = _neighbours(np.array([[1, 1, 0, 0, 0]]), np.array([[0.1, 0.1, 0.9, 0.9, 0.9]]))

    result = vote(nb, k=5, weighting="uniform")
    assert (result.label(prior=0)[0], result.best[0], result.has_vote[0]) == (0, pytest.approx(0.6), True)

    # the two close positives outweigh three far negatives: 20 vs 3.33
    result = vote(nb, k=5, weighting="distance")
    assert result.label(prior=0)[0] == 1
    assert result.best[0] == pytest.approx(20 / (20 + 3 / 0.9), rel=1e-4)

    result = vote(nb, k=3, weighting="uniform")
    assert (result.label(prior=0)[0], result.best[0]) == (1, pytest.approx(2 / 3))


def test_vote_uses_first_k_valid_and_handles_no_neighbour() -> None:
    nb = _neighbours(np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]), np.full((2, 5), 0.5))
    valid = np.array([[False, False, True, True, False], [False] * 5])
    result = vote(nb, k=3, weighting="uniform", valid=valid)
    assert result.label(prior=0).tolist() == [1, 0]
    assert result.best.tolist() == [1.0, 0.0]
    assert result.has_vote.tolist() == [True, False]


def test_vote_rejects_unknown_weighting() -> None:
    nb = _neighbours(np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(ConfigError, match="weighting: got 'gaussian'"):
        vote(nb, k=1, weighting="gaussian")  # type: ignore[arg-type]


def test_euclid_from_cosine_on_normalised_vectors() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 16))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    cos = np.array([a @ b])
    assert distance_from_similarity(cos, "euclid")[0] == pytest.approx(np.linalg.norm(a - b))
    assert distance_from_similarity(cos, "cosine")[0] == pytest.approx(1 - a @ b)


def test_cv_never_lets_a_point_or_its_fold_vote() -> None:
    # Each point's only neighbours are itself and a point of the opposite label in its own
    # fold; with those excluded nobody may vote.
    ids = np.arange(10, dtype=np.int64)
    labels = np.array([0, 1] * 5, dtype=np.int8)
    fold = assign_folds(10, 2, seed=3)
    same_fold = {i: next(j for j in range(10) if fold[j] == fold[i] and j != i) for i in range(10)}
    nb = Neighbours(
        ids=np.array([[i, same_fold[i]] for i in range(10)], dtype=np.int64),
        labels=np.zeros((10, 2), np.int64),
        similarity=np.ones((10, 2)),
    )
    results = cross_validate(
        ids,
        labels,
        np.ones(10, bool),
        nb,
        ks=[1],
        weightings=["uniform"],
        metrics=["cosine"],
        folds=2,
        seed=3,
    )
    assert results[0].evaluated == 0


def test_cv_scores_a_clean_two_cluster_problem_perfectly() -> None:
    ids = np.arange(20, dtype=np.int64) * 7 + 100  # ids are not positions
    labels = np.array([0] * 10 + [1] * 10, dtype=np.int8)
    # neighbours: self first, then the other members of the same cluster
    rows = [[ids[i]] + [ids[j] for j in range(20) if j != i and labels[j] == labels[i]] for i in range(20)]
    nb = Neighbours(
        ids=np.array(rows), labels=np.zeros((20, 10), np.int64), similarity=np.full((20, 10), 0.9)
    )
    results = cross_validate(
        ids,
        labels,
        np.ones(20, bool),
        nb,
        ks=[1, 3],
        weightings=["uniform", "distance"],
        metrics=["cosine", "euclid"],
        folds=4,
        seed=0,
    )
    assert len(results) == 8
    assert all(r.accuracy == 1.0 and r.evaluated == 20 for r in results)


def test_cv_needs_at_least_folds_points() -> None:
    nb = Neighbours(
        ids=np.zeros((2, 1), np.int64), labels=np.zeros((2, 1), np.int64), similarity=np.ones((2, 1))
    )
    with pytest.raises(PoolExhaustedError, match="at least 5 labeled images"):
        cross_validate(
            np.arange(2), np.zeros(2, np.int8), np.ones(2, bool), nb, ks=[1], weightings=["uniform"],
            metrics=["cosine"], folds=5, seed=0,
        )  # fmt: skip


# --------------------------------------------------------------------------- the stage


@pytest.fixture
def digits_workdir(workdir):
    """Digits 0 vs 1 as normalised 64-d vectors in an embedded store.

    ids 1..100: 1-20 gt, 21-90 pool, 91-100 test. Crowd labels for 21-35 (one of them,
    id 3, a gt image with a wrong crowd answer); automatic labels for 36-60.
    """
    digits = load_digits(n_class=2)
    x = digits.data[:100].astype(np.float32)
    y = digits.target[:100].astype(np.int8)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(1, 101, dtype=np.int64)
    split = ["gt"] * 20 + ["pool"] * 70 + ["test"] * 10
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"d{i}.png" for i in ids],
            "path": [f"images/{i}.png" for i in ids],
            "split": split,
            "label": [int(y[i]) if split[i] == "gt" else None for i in range(100)],
            "width": [8] * 100,
            "height": [8] * 100,
            "sha256": [str(i) for i in ids],
        }
    )
    tables.write(tables.check(images, IMAGES, where="fixture"), workdir.table("images"))
    crowd = [(int(ids[i]), int(y[i]), 0.9) for i in range(20, 35)] + [(3, 1 - int(y[2]), 0.9)]
    tables.write(
        tables.check(
            pl.DataFrame(
                {
                    "task": [c[0] for c in crowd],
                    "label": [c[1] for c in crowd],
                    "confidence": [c[2] for c in crowd],
                    "n_answers": [3] * len(crowd),
                }
            ),
            AGGREGATED,
            where="fixture",
        ),
        workdir.table("aggregated"),
    )
    auto = list(range(35, 60))
    tables.write(
        tables.check(
            pl.DataFrame(
                {
                    "id": ids[auto],
                    "knn_label": y[auto],
                    "knn_share": [0.95] * len(auto),
                    "cluster": [0] * len(auto),
                    "cluster_label": y[auto],
                    "auto_label": y[auto],
                    "status": ["auto"] * len(auto),
                }
            ),
            PSEUDOLABELS,
            where="fixture",
        ),
        workdir.table("pseudolabels"),
    )
    base = Settings()
    settings = replace(base, rounds=replace(base.rounds, strategy="seed"))  # auto = the pseudo-labels
    store = open_store(workdir, settings)
    store.ensure_collection(dim=64, distance="cosine")
    store.upsert(
        ids,
        x,
        [
            {
                "split": split[i],
                "source": f"d{ids[i]}.png",
                "status": "gt" if split[i] == "gt" else ("test" if split[i] == "test" else "unlabeled"),
                "has_label": split[i] == "gt",
                **({"label": int(y[i])} if split[i] == "gt" else {}),
            }
            for i in range(100)
        ],
    )
    yield workdir, settings, store, dict(zip(ids.tolist(), y.tolist(), strict=True))
    store.close()


def test_propagate_labels_the_rest_and_never_overwrites_ground_truth(digits_workdir) -> None:
    workdir, settings, store, truth = digits_workdir

    report = propagate(workdir, settings, store)

    final = tables.read(workdir.table("final_labels"), FINAL_LABELS)
    by_id = {i: (lab, origin) for i, lab, origin, _ in final.rows()}
    assert sorted(by_id) == list(range(1, 91))  # every non-test image, no test image
    for i in range(1, 21):
        assert by_id[i] == (truth[i], "gt")  # id 3's wrong crowd answer did not win
    assert report.conflicts == {"crowd-vs-gt": 1}
    assert report.labeled == {"gt": 20, "crowd": 15, "auto": 25}
    assert report.propagated == 30 and report.not_in_store == 0
    propagated = final.filter(pl.col("origin") == "propagated")
    accuracy = np.mean([truth[i] == lab for i, lab in propagated.select("id", "label").rows()])
    assert accuracy >= 0.95  # digits 0 vs 1 are easy
    assert report.k in settings.propagate.ks and 0.9 <= report.cv_accuracy <= 1.0
    assert len(report.grid) == len(settings.propagate.ks) * 2 * 2
    assert propagated["confidence"].min() >= 0.5  # type: ignore[operator]

    # payload: gt points still carry their own label and origin; propagated points are
    # flagged by origin, and status keeps meaning the pipeline state
    for point_id, payload, _ in store.retrieve(list(range(1, 21))):
        assert payload["label"] == truth[point_id] and payload["origin"] == "gt" and payload["status"] == "gt"
    assert store.ids(Filter(must={"origin": "propagated"})) == set(propagated["id"].to_list())
    assert store.ids(Filter(must={"status": "propagated"})) == set()
    from iris.store.copy import describe

    assert describe(store)["by_origin"] == {"gt": 20, "crowd": 15, "auto": 25, "propagated": 30}
    assert store.ids(Filter(must={"split": "test", "has_label": True})) == set()


def test_propagate_rerun_gives_the_same_table(digits_workdir) -> None:
    workdir, settings, store, _ = digits_workdir
    first = propagate(workdir, settings, store)
    table = tables.read(workdir.table("final_labels"))
    second = propagate(workdir, settings, store)
    assert tables.read(workdir.table("final_labels")).equals(table)
    assert (first.k, first.weighting, first.metric, first.cv_accuracy) == (
        second.k,
        second.weighting,
        second.metric,
        second.cv_accuracy,
    )


def test_with_rounds_the_auto_labels_are_the_rounds_and_never_the_pseudolabels(digits_workdir) -> None:
    workdir, settings, store, truth = digits_workdir
    rounds = replace(settings, rounds=replace(settings.rounds, strategy="iris"))
    with pytest.raises(StageOrderError, match=r"round_labels\.parquet is missing"):
        propagate(workdir, rounds, store)  # the pseudo-labels are there, the rounds' labels not
    pool = sorted(i for i in truth if 21 <= i <= 90)
    tables.write(
        pl.DataFrame(
            {"id": pool, "auto_label": [1 - truth[i] for i in pool], "certainty": [0.5] * len(pool)},
            schema=tables.ROUND_LABELS,
        ),
        workdir.table("round_labels"),
    )
    report = propagate(workdir, rounds, store)
    final = tables.read(workdir.table("final_labels"), FINAL_LABELS)
    auto = final.filter(pl.col("origin") == "auto")
    crowd = set(final.filter(pl.col("origin") == "crowd")["id"].to_list())
    assert set(auto["id"].to_list()) == set(pool) - crowd  # every pool image the crowd did not label
    assert all(
        lab == 1 - truth[i] for i, lab in auto.select("id", "label").rows()
    )  # theirs, not the pseudo-labels'
    assert auto["confidence"].unique().to_list() == [0.75]
    assert report.propagated == 0 and report.labeled["auto"] == auto.height
