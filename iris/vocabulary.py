"""The words iris stores: splits, statuses, origins, and the kNN weightings and metrics.

Declared once here, in a module that imports nothing heavy (the settings and the CLI
name them; :mod:`iris.tables` re-exports the enums beside the schemas and
:mod:`iris.neighbours` implements the weightings and metrics). The enums are ``str``
enums: tables and payloads store plain strings and ``Status.AUTO == "auto"``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Split(StrEnum):
    """Which manifest an image came from (column and payload key ``split``)."""

    GT = "gt"
    POOL = "pool"
    TEST = "test"


class Status(StrEnum):
    """Where an image stands in the pipeline.

    Set by embed (``gt``, ``unlabeled``, ``test``: payload key ``status``), pseudolabel
    (``auto``, ``problematic``: its table) and select (``neighbour``: the shortlist); the
    current one is :func:`iris.statuses.statuses`. Who labeled an image is :class:`Origin`.
    """

    GT = "gt"
    UNLABELED = "unlabeled"
    AUTO = "auto"
    PROBLEMATIC = "problematic"
    NEIGHBOUR = "neighbour"
    TEST = "test"


class Origin(StrEnum):
    """Who gave an image its final label (``final_labels.origin``, payload key ``origin``).

    Listed by precedence: ground truth beats the crowd, the crowd beats the automatic
    labels; ``propagated`` fills in what is left.
    """

    GT = "gt"
    CROWD = "crowd"
    AUTO = "auto"
    PROPAGATED = "propagated"


def initial_status(split: str, has_label: bool) -> Status:
    """An image's status when it enters the store: ``test``, ``gt`` (labeled) or ``unlabeled``."""
    if split == Split.TEST:
        return Status.TEST
    return Status.GT if has_label else Status.UNLABELED


SPLITS: tuple[str, ...] = tuple(s.value for s in Split)
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
ORIGINS: tuple[str, ...] = tuple(o.value for o in Origin)

Weighting = Literal["uniform", "distance"]
"""How neighbours' votes are weighted (:func:`iris.neighbours.weights`)."""
Metric = Literal["cosine", "dot", "euclid"]
"""How a cosine similarity becomes a distance (:func:`iris.neighbours.distance_from_similarity`)."""
WEIGHTINGS: tuple[Weighting, ...] = get_args(Weighting)
METRICS: tuple[Metric, ...] = get_args(Metric)
