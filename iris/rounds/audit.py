"""An honest audit of the automatic labels, and when to stop buying rounds.

Every round also buys a small **uniform** random sample of the images that stay labeled
automatically (:func:`audit_sample`). Its crowd labels give an unbiased estimate of the
automatic labels' accuracy (:func:`audit_estimate`), which a strategy's own certainty
cannot: the images a strategy picks are chosen *because* they are doubtful, the audit's are
not chosen at all.

The crowd is not the truth. With ``a`` the share of audited images where the automatic
label agrees with the crowd's, and ``q_i`` the crowd label's confidence (the aggregator's
posterior: the chance it is right), errors independent, ::

    E[agreements] = Σ (1 − q_i) + p · Σ (2 q_i − 1)

so the automatic labels' accuracy is ``p̂ = (agreements − Σ(1 − q_i)) / Σ(2 q_i − 1)``;
the interval is the Wilson interval of the agreement share mapped through the same
(increasing) line, clipped to [0, 1].

:func:`decide` stops the loop when the expected accuracy of all final labels (ground truth
right, crowd labels right with their mean confidence, automatic labels at the audit's
*lower* bound) reaches the target, when the next round would pass the budget, or after the
last round allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from iris.errors import InputError
from iris.pseudolabel.estimate import wilson_interval

StopReason = Literal["target", "budget", "rounds", "exhausted"]
STOP_REASONS: dict[str, str] = {
    "exhausted": "every pool image is labeled by a person",
    "target": "the expected accuracy's lower bound reached the target",
    "rounds": "max_rounds rounds done",
    "budget": "the next round would overspend the budget",
}
"""What each :data:`StopReason` means, as the log and the report say it."""


def audit_sample(
    open_rows: npt.NDArray[np.int64], *, n: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """``n`` rows drawn uniformly without replacement from ``open_rows`` (the images that stay
    automatic after this round's picks), in the order drawn."""
    rows = np.asarray(open_rows, dtype=np.int64)
    return rng.choice(rows, size=min(max(n, 0), len(rows)), replace=False).astype(np.int64)


@dataclass(frozen=True)
class AuditEstimate:
    """Accuracy of the automatic labels from one audit sample."""

    n: int
    """Audited images with a crowd label."""
    agree: int
    """Of those, how many automatic labels the crowd agreed with."""
    crowd_accuracy: float
    """Mean confidence of the audited crowd labels (their expected accuracy)."""
    accuracy: float | None
    """Estimated share of right automatic labels (None without a usable sample)."""
    low: float | None
    high: float | None
    """The 95% interval of ``accuracy``."""

    @property
    def agreement(self) -> float | None:
        return self.agree / self.n if self.n else None


def audit_estimate(
    auto_labels: npt.NDArray[np.integer],
    crowd_labels: npt.NDArray[np.integer],
    crowd_confidence: npt.NDArray[np.floating],
    *,
    z: float = 1.96,
) -> AuditEstimate:
    """The automatic labels' accuracy from an audit sample (see the module docstring).

    Args:
        auto_labels: (n,) automatic label of each audited image, as it was when drawn.
        crowd_labels: (n,) the crowd's aggregated label.
        crowd_confidence: (n,) its confidence in [0.5, 1] (lower values are read as 0.5).
        z: normal quantile of the interval (1.96: 95%).

    Raises:
        InputError: arrays of different lengths.
    """
    a = np.asarray(auto_labels)
    c = np.asarray(crowd_labels)
    q = np.clip(np.asarray(crowd_confidence, dtype=np.float64), 0.5, 1.0)
    if not (len(a) == len(c) == len(q)):
        raise InputError(f"audit: {len(a)} automatic labels, {len(c)} crowd labels, {len(q)} confidences")
    n = len(a)
    agree = int((a == c).sum())
    if n == 0:
        return AuditEstimate(n=0, agree=0, crowd_accuracy=float("nan"), accuracy=None, low=None, high=None)
    slope = float((2 * q - 1).sum())
    offset = float((1 - q).sum())
    crowd_accuracy = float(q.mean())
    if slope <= 1e-9:  # a coin-toss crowd says nothing about the automatic labels
        return AuditEstimate(n, agree, crowd_accuracy, accuracy=None, low=None, high=None)
    interval = wilson_interval(agree, n, z=z)
    assert interval is not None

    def to_accuracy(share: float) -> float:
        return float(np.clip((share * n - offset) / slope, 0.0, 1.0))

    return AuditEstimate(
        n=n,
        agree=agree,
        crowd_accuracy=crowd_accuracy,
        accuracy=to_accuracy(agree / n),
        low=to_accuracy(interval[0]),
        high=to_accuracy(interval[1]),
    )


def expected_accuracy(
    *, n_gt: int, n_crowd: int, crowd_accuracy: float, n_auto: int, auto_accuracy: float
) -> float:
    """Expected share of right final labels over ground truth, crowd and automatic labels."""
    total = n_gt + n_crowd + n_auto
    if total == 0:
        return 1.0
    return (n_gt + n_crowd * crowd_accuracy + n_auto * auto_accuracy) / total


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` said after one round."""

    stop: bool
    reason: StopReason | None
    expected_low: float | None
    """Expected final-label accuracy with the automatic labels at the audit's lower bound."""


def decide(
    audit: AuditEstimate,
    *,
    n_gt: int,
    n_crowd: int,
    crowd_accuracy: float,
    n_auto: int,
    target: float,
    spent: int,
    next_round: int,
    budget: int,
    round_index: int,
    max_rounds: int,
) -> Decision:
    """Stop or go on after round ``round_index`` (0-based).

    Args:
        audit: this round's audit of the automatic labels.
        n_gt, n_crowd, n_auto: final labels of each origin if the loop stopped now.
        crowd_accuracy: expected accuracy of the crowd labels (their mean confidence).
        target: expected final-label accuracy at which to stop.
        spent: images bought so far (audits included); next_round: what the next round buys.
        budget: images the loop may buy in all.
        max_rounds: rounds at most.
    """
    low = (
        None
        if audit.low is None
        else expected_accuracy(
            n_gt=n_gt, n_crowd=n_crowd, crowd_accuracy=crowd_accuracy, n_auto=n_auto, auto_accuracy=audit.low
        )
    )
    reason: StopReason | None = None
    if n_auto == 0:
        reason = "exhausted"
    elif low is not None and low >= target:
        reason = "target"
    elif round_index + 1 >= max_rounds:
        reason = "rounds"
    elif spent + next_round > budget:
        reason = "budget"
    return Decision(stop=reason is not None, reason=reason, expected_low=low)


__all__ = [
    "STOP_REASONS",
    "AuditEstimate",
    "Decision",
    "StopReason",
    "audit_estimate",
    "audit_sample",
    "decide",
    "expected_accuracy",
]
