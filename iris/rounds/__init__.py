"""Crowd rounds: the pure cores of buying labels a round at a time.

* :mod:`iris.rounds.strategies` — which images a round buys (``iris``, ``seed``, ``random``,
  ``least-certain``, ``whole-pool``, ``none``), registered by name;
* :mod:`iris.rounds.audit` — the uniform audit sample of the automatic labels, its unbiased
  estimate with an interval, and the rule that stops the rounds.

No stage here: the crowd stage's loop (pseudo-label, pick, buy, aggregate, again) calls these.
"""

from iris.rounds.audit import AuditEstimate, Decision, audit_estimate, audit_sample, decide, expected_accuracy
from iris.rounds.strategies import STRATEGIES, Candidates, StrategyName, pick

__all__ = [
    "STRATEGIES",
    "AuditEstimate",
    "Candidates",
    "Decision",
    "StrategyName",
    "audit_estimate",
    "audit_sample",
    "decide",
    "expected_accuracy",
    "pick",
]
