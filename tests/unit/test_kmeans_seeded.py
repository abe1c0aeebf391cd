from __future__ import annotations

import numpy as np
import pytest

from iris.errors import InputError
from iris.pseudolabel.estimate import kfold_cluster_labels
from iris.pseudolabel.kmeans import SeededKMeans, normalise


def two_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal([5, 0], 0.3, size=(40, 2))
    b = rng.normal([0, 5], 0.3, size=(40, 2))
    return np.vstack([a, b]).astype(np.float32), np.array([0] * 40 + [1] * 40)


def test_clusters_take_their_seed_label() -> None:
    x, truth = two_blobs()
    # Seeds: two points of each blob, labeled with the blob's class.
    seeds_idx = np.array([0, 1, 40, 41])
    model = SeededKMeans(random_state=0).fit(x, x[seeds_idx], truth[seeds_idx])
    assert model.cluster_labels_.tolist() == [0, 0, 1, 1]
    assert (model.cluster_labels_[model.labels_] == truth).all()
    assert (model.predict_label(np.array([[5.1, 0.1], [0.0, 4.9]], np.float32)) == [0, 1]).all()


def test_same_seed_same_clusters() -> None:
    x, truth = two_blobs(1)
    seeds = np.array([3, 9, 50, 60])
    a = SeededKMeans(random_state=3).fit(x, x[seeds], truth[seeds]).labels_
    b = SeededKMeans(random_state=3).fit(x, x[seeds], truth[seeds]).labels_
    assert (a == b).all()


def test_shape_errors_say_what_was_seen() -> None:
    x, truth = two_blobs()
    with pytest.raises(InputError, match="n_samples=2 should be >= n_clusters=3"):
        SeededKMeans().fit(x[:2], x[:3], truth[:3])
    with pytest.raises(InputError, match="do not match"):
        SeededKMeans().fit(x, np.zeros((2, 3), np.float32), truth[:2])
    with pytest.raises(InputError, match="1 seed labels for 2 seeds"):
        SeededKMeans().fit(x, x[:2], truth[:1])


def test_kfold_never_uses_an_images_own_seed() -> None:
    # One labeled point is mislabeled; with its own seed it would keep its wrong label,
    # held out (one fold per image) it takes its blob's label from the other seeds.
    x, truth = two_blobs()
    labeled = np.array([0, 1, 2, 3, 40, 41, 42, 43])
    labels = truth[labeled].copy()
    labels[0] = 1
    held_out = kfold_cluster_labels(x, labeled, labels, folds=len(labeled), seed=0)
    assert held_out[0] == 0
    assert (held_out[4:] == 1).all()


def test_normalise_makes_unit_rows_and_keeps_zero_rows() -> None:
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_minibatch_past_the_threshold_keeps_clusters_tied_to_their_seeds() -> None:
    # 6 blobs of 2,000 points, one seed in each; the mini-batch fit must find the same
    # partition as full Lloyd, and each cluster keeps its seed's label.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16)) * 6
    x = np.concatenate([c + rng.normal(size=(2000, 16)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.arange(6) % 2, 2000)
    seeds = np.arange(6) * 2000
    full = SeededKMeans(minibatch_above=0).fit(x, x[seeds], truth[seeds])
    mini = SeededKMeans(minibatch_above=5000, batch_size=1024).fit(x, x[seeds], truth[seeds])
    assert type(full.model_).__name__ == "KMeans" and type(mini.model_).__name__ == "MiniBatchKMeans"
    assert (mini.labels_ == full.labels_).mean() > 0.99
    assert (mini.cluster_labels_[mini.labels_] == truth).mean() > 0.99
    assert (mini.labels_[seeds] == np.arange(6)).all()
    np.testing.assert_array_equal(mini.predict_label(centres.astype(np.float32)), np.arange(6) % 2)
