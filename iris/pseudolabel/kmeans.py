"""KMeans seeded by the labeled images: every cluster takes its seed's label.

k is the number of labeled images and their embeddings are the initial centroids; one
run, no re-initialisation (``n_init=1``), so the clusters stay tied to their seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans

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
    """Only used by scikit-learn to relocate an empty cluster."""

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
        model = KMeans(
            n_clusters=len(seeds),
            init=np.ascontiguousarray(seeds, dtype=np.float32),
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
