"""Crowd rounds: buying labels a round at a time.

* :mod:`iris.rounds.strategies` — which images a round buys (``iris``, ``seed``, ``random``,
  ``least-certain``, ``whole-pool``, ``none``), registered by name;
* :mod:`iris.rounds.audit` — the uniform audit sample of the automatic labels, its unbiased
  estimate with an interval, and the rule that stops the rounds;
* :mod:`iris.rounds.labeler` — the automatic labels a round is picked by (kNN ensemble
  over every label known so far, averaged with a linear probe);
* :mod:`iris.rounds.loop` — the loop the crowd stage runs (label, pick, buy, aggregate,
  audit, again), resumable round by round.

The first three are pure cores (numpy in, numpy out); the loop reads the store and the
tables and is imported by the crowd stage only.
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
