"""KMeans seeded by the labeled images: every cluster takes its seed's label.

k is the number of labeled images and their embeddings are the initial centroids; one
run, no re-initialisation (``n_init=1``), so the clusters stay tied to their seeds.

Past ``minibatch_above`` rows the fit is scikit-learn's mini-batch KMeans (same seeds,
no centre reassignment, so every cluster still belongs to its seed): at a million
256-d rows and 200 clusters one Lloyd iteration is 51 GFLOP, and the pseudolabel
stage fits six times (once, then once per estimate fold). Below it, full Lloyd as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans, MiniBatchKMeans

from iris.errors import InputError


@dataclass
class SeededKMeans:
    """KMeans whose centroids start at labeled embeddings (scikit-learn estimator contract).

    Attributes set by :meth:`fit`: ``labels_`` (n,) cluster of each row,
    ``cluster_labels_`` (k,) class label of each cluster (its seed's), ``n_iter_``.
    """

    max_iter: int = 100
    """Lloyd iterations at most."""
    random_state: int | None = 0
    """Only used by scikit-learn to relocate an empty cluster (and to draw mini-batches)."""
    minibatch_above: int = 50_000
    """Rows past which mini-batch KMeans is fitted instead of full Lloyd (0 = never)."""
    batch_size: int = 4096
    """Rows per mini-batch."""

    def fit(
        self,
        vectors: npt.NDArray[np.float32],
        seeds: npt.NDArray[np.float32],
        seed_labels: npt.NDArray[np.int64],
    ) -> SeededKMeans:
        """Cluster ``vectors`` (n, dim) starting from ``seeds`` (k, dim) labeled ``seed_labels`` (k,).

        Raises:
            InputError: shapes disagree, or fewer rows than seeds.
        """
        if seeds.ndim != 2 or vectors.ndim != 2 or seeds.shape[1] != vectors.shape[1]:
            raise InputError(
                f"KMeans: seeds of shape {seeds.shape} do not match vectors of shape {vectors.shape}"
            )
        if len(seed_labels) != len(seeds):
            raise InputError(f"KMeans: {len(seed_labels)} seed labels for {len(seeds)} seeds")
        if len(seeds) == 0:
            raise InputError("KMeans: no labeled seeds, expected at least one labeled image")
        if len(vectors) < len(seeds):
            raise InputError(f"KMeans: n_samples={len(vectors)} should be >= n_clusters={len(seeds)}")
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        init = np.ascontiguousarray(seeds, dtype=np.float32)
        model: KMeans | MiniBatchKMeans
        if self.minibatch_above and len(data) > self.minibatch_above:
            model = MiniBatchKMeans(
                n_clusters=len(seeds),
                init=init,
                n_init=1,
                max_iter=self.max_iter,
                batch_size=self.batch_size,
                reassignment_ratio=0.0,  # a reassigned centre would lose its seed's label
                random_state=self.random_state,
            ).fit(data)
        else:
            model = KMeans(
                n_clusters=len(seeds),
                init=init,
                n_init=1,
                max_iter=self.max_iter,
                random_state=self.random_state,
            ).fit(data)
        self.model_ = model
        self.labels_ = model.labels_.astype(np.int64)
        self.cluster_labels_ = np.asarray(seed_labels, dtype=np.int64).copy()
        self.n_iter_ = int(model.n_iter_)
        return self

    def predict_label(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Class label of the nearest fitted centroid of each row of ``vectors`` (n, dim)."""
        clusters = self.model_.predict(np.ascontiguousarray(vectors, dtype=np.float32))
        return self.cluster_labels_[clusters]


def normalise(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero): the geometry the cosine store uses."""
    data = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return (data / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)
