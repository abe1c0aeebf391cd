"""Consensus of the kNN ensemble and the seeded clustering.

An image keeps an automatic label only when the ensemble gave one and, with clustering
on, its cluster's label agrees; every other image is *problematic*.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from iris.neighbours import NO_LABEL
from iris.tables import Status

AUTO = Status.AUTO.value
PROBLEMATIC = Status.PROBLEMATIC.value


def consensus(
    knn_label: npt.NDArray[np.int64], cluster_label: npt.NDArray[np.int64] | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Automatic labels and statuses.

    Args:
        knn_label: (n,) ensemble labels, ``NO_LABEL`` when unsure.
        cluster_label: (n,) label of each image's cluster, or None to use the ensemble alone.

    Returns:
        ``auto_label`` (n,) (``NO_LABEL`` unless automatic) and ``status`` (n,) of
        ``"auto"`` / ``"problematic"``.
    """
    agreed = knn_label != NO_LABEL
    if cluster_label is not None:
        agreed &= cluster_label == knn_label
    auto_label = np.where(agreed, knn_label, NO_LABEL).astype(np.int64)
    status = np.where(agreed, AUTO, PROBLEMATIC)
    return auto_label, status
