"""The simulated crowd: seeded virtual people who go through the same campaign as real ones.

Four parts, each readable alone:

* :mod:`~iris.crowd.backends.simulated.population` — the kinds of people (honest with a skill,
  spammers, fast clickers): how they take the training and the exam, answer and pace a page;
* :mod:`~iris.crowd.backends.simulated.truth` — what they know (the answer key matched to the
  tasks) and how hard each image is for them;
* :mod:`~iris.crowd.backends.simulated.log` — the append-only purchase log a killed run resumes
  from without buying a page twice;
* :mod:`~iris.crowd.backends.simulated.engine` — the event loop: pages handed out by priority,
  bought, checked by quality control after every page, banned people's tasks re-issued,
  new cohorts while tasks remain;

and :mod:`~iris.crowd.backends.simulated.backend`, the ``simulated`` backend over them.
"""

from iris.crowd.backends.simulated.backend import SimulatedBackend
from iris.crowd.backends.simulated.engine import (
    EPOCH,
    HoneypotPicker,
    Simulation,
    SimulationResult,
    TaskQueue,
    WorkerState,
    least_seen_honeypots,
    simulate,
)
from iris.crowd.backends.simulated.log import PurchaseLog
from iris.crowd.backends.simulated.population import MAX_COHORTS, Kind, VirtualWorker, make_population
from iris.crowd.backends.simulated.truth import (
    DIFFICULTY,
    drawn_difficulty,
    fit_difficulty,
    load_difficulty,
    load_truth,
    match_truth,
    p_right,
    read_answer_key,
)

__all__ = [
    "DIFFICULTY",
    "EPOCH",
    "MAX_COHORTS",
    "HoneypotPicker",
    "Kind",
    "PurchaseLog",
    "SimulatedBackend",
    "Simulation",
    "SimulationResult",
    "TaskQueue",
    "VirtualWorker",
    "WorkerState",
    "drawn_difficulty",
    "fit_difficulty",
    "least_seen_honeypots",
    "load_difficulty",
    "load_truth",
    "make_population",
    "match_truth",
    "p_right",
    "read_answer_key",
    "simulate",
]
