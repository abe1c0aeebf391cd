"""Kinds of people in the simulated crowd, and how each kind goes through a campaign.

A cohort is ``workers`` people: a share ``spammers`` answer the main pool at random, a share
``fast_clickers`` click through pages in a few seconds, mostly giving one answer, and the
rest are honest, with an accuracy ``0.5 + 0.5 · Beta(5, 1)`` (mean ≈ 0.92). All of them
take the training (each mistake shows a hint, which teaches a little) and the exam
honestly — it costs them nothing — which is exactly the case quality control exists for.

Every draw comes from a generator seeded by the campaign seed, the cohort, the person and
the page, so a replay is identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from iris.crowd.backends.simulated.truth import DEFAULT_DIFFICULTY, p_right
from iris.errors import CrowdError

MAX_COHORTS = 20
"""New cohorts arrive while tasks remain, at most this many in all."""
COHORT_GAP_S = 6 * 3600
"""A cohort arrives this long after the one before it (within its first hour)."""
HINT_GAIN = 0.005
"""Accuracy a person gains from each training hint (up to :data:`MAX_ACCURACY`)."""
MAX_ACCURACY = 0.99
MEAN_BREAK_S = 30.0
"""Mean pause between two pages of one person."""

Kind = Literal["good", "spammer", "fast"]


@dataclass
class Exam:
    """What one person did in the training and the exam."""

    hints: int
    """Training mistakes (each showed a hint)."""
    correct: int
    total: int
    passed: bool
    right: tuple[bool, ...] = ()
    """Each exam answer, right or not, in the order given."""


@dataclass
class VirtualWorker:
    id: str
    kind: Kind
    accuracy: float
    seconds_per_task: float
    pages: int
    """Pages this person does before leaving."""
    arrival: float
    """Seconds after the campaign start."""
    favourite: int
    """The answer a fast clicker mostly gives."""

    @property
    def cohort(self) -> int:
        return int(self.id.split("-")[1])

    @property
    def number(self) -> int:
        """Place in the cohort."""
        return int(self.id.split("-")[2])

    def chance(self, image: int, difficulty: Mapping[int, float]) -> float:
        """Chance of answering ``image`` right when trying."""
        return p_right(self.accuracy, difficulty.get(image, DEFAULT_DIFFICULTY))

    def take_exam(
        self,
        training: Sequence[int],
        exam: Sequence[int],
        *,
        difficulty: Mapping[int, float],
        exam_pass: float,
        seed: int,
    ) -> Exam:
        """Go through the training (learning from its hints), then the exam.

        The training is not scored; every mistake shows the hint and raises the accuracy a
        little. The exam decides who gets the skill.
        """
        rng = np.random.default_rng([seed, self.cohort, self.number, 3])
        hints = sum(int(rng.random() >= self.chance(i, difficulty)) for i in training)
        self.accuracy = min(self.accuracy + HINT_GAIN * hints, MAX_ACCURACY)
        right = tuple(bool(rng.random() < self.chance(i, difficulty)) for i in exam)
        correct = sum(right)
        passed = correct >= exam_pass * len(exam) - 1e-9
        return Exam(hints=hints, correct=correct, total=len(exam), passed=passed, right=right)

    def rng(self, seed: int, page: int, *, submit: bool) -> np.random.Generator:
        """The generator of this person's ``page``-th page (its start, or its submission)."""
        return np.random.default_rng([seed, 5, self.cohort, self.number, page, int(submit)])

    def answer(
        self,
        tasks: Sequence[int],
        *,
        truth: Mapping[int, int],
        difficulty: Mapping[int, float],
        rng: np.random.Generator,
    ) -> list[int]:
        """This person's labels for the tasks of one page, in order."""
        labels: list[int] = []
        for t in tasks:
            if self.kind == "spammer":
                labels.append(int(rng.integers(0, 2)))
            elif self.kind == "fast":
                labels.append(self.favourite if rng.random() < 0.9 else 1 - self.favourite)
            else:
                right = rng.random() < self.chance(t, difficulty)
                labels.append(truth[t] if right else 1 - truth[t])
        return labels

    def page_seconds(self, n_tasks: int, rng: np.random.Generator) -> float:
        """Time spent on a page of ``n_tasks``: per task around the person's pace, plus overhead."""
        return float(
            sum(rng.lognormal(np.log(self.seconds_per_task), 0.25) for _ in range(n_tasks))
            + rng.uniform(1, 4)
        )

    @staticmethod
    def break_seconds(rng: np.random.Generator) -> float:
        """Pause before the next page."""
        return float(rng.exponential(MEAN_BREAK_S))


def make_population(
    n: int, *, spammers: float, fast_clickers: float, pages_per_worker: int, seed: int, cohort: int = 0
) -> list[VirtualWorker]:
    """Draw one cohort of ``n`` people (deterministic in ``seed`` and ``cohort``)."""
    if not 0 <= spammers + fast_clickers <= 1:
        raise CrowdError(
            f"crowd.spammers ({spammers}) + crowd.fast_clickers ({fast_clickers}) must lie in [0, 1]"
        )
    rng = np.random.default_rng([seed, cohort, 7])
    n_spam = round(n * spammers)
    n_fast = round(n * fast_clickers)
    spam: list[Kind] = ["spammer"]
    fast: list[Kind] = ["fast"]
    good: list[Kind] = ["good"]
    kinds = spam * n_spam + fast * n_fast + good * (n - n_spam - n_fast)
    order = rng.permutation(n)
    workers = []
    for i in range(n):
        kind = kinds[order[i]]
        accuracy = 0.5 + 0.5 * float(rng.beta(5.0, 1.0))
        if kind == "fast":
            seconds = float(rng.uniform(0.1, 0.35))
        elif kind == "spammer":
            seconds = float(rng.lognormal(np.log(1.5), 0.3))
        else:
            seconds = float(rng.lognormal(np.log(2.5), 0.4))
        workers.append(
            VirtualWorker(
                id=f"sim-{cohort:02d}-{i:04d}",
                kind=kind,
                accuracy=accuracy,
                seconds_per_task=seconds,
                pages=1 + int(rng.poisson(max(pages_per_worker - 1, 0))),
                arrival=float(rng.uniform(0, 3600)) + cohort * COHORT_GAP_S,
                favourite=int(rng.integers(0, 2)),
            )
        )
    return workers
