"""The simulated campaign: a discrete-event loop over virtual people, one small step a method.

Events are a person starting a page and submitting it, in virtual time from :data:`EPOCH`.
:meth:`Simulation.run` pops them in time order and hands each to :meth:`~Simulation.start_page`
or :meth:`~Simulation.submit_page`; when none are left and tasks still need answers, the next
cohort arrives (:meth:`~Simulation.arrive`, at most :data:`MAX_COHORTS`).

* A page takes the first ``real_per_page`` tasks in priority order that still need an answer
  and that this person has not answered (:class:`TaskQueue`), plus honeypots chosen by the
  engine's :class:`HoneypotPicker` (the least seen by this person by default).
* A submitted page is bought (appended to the :class:`PurchaseLog`, or taken from it on a
  replay), then quality control is brought up to date with it
  (:class:`iris.crowd.quality.QualityState`, the same bans as re-checking every answer, at a
  cost per page that does not grow with the campaign). A banned person's tasks go back to
  the queue (``reissue_banned``); a page open when its person is banned expires.

:func:`simulate` (what the ``simulated`` backend runs) plugs in Toloka's platform rules from
:mod:`iris.crowd.platform`, so that a dry run predicts a real campaign: a person never sees a
honeypot twice and leaves when theirs run out, and bans follow Toloka's quality control
(:class:`~iris.crowd.platform.TolokaQualityControl`: no pro-rated fast rule, rolling windows,
Toloka's majority), with iris's skill rule applied on top (:class:`SkillOnTop`: Toloka has
no rule like it; iris judges the skills and bans). ``rules="iris"`` runs iris's own rules instead.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from iris import tables
from iris.crowd import platform, quality
from iris.crowd.backends.base import CampaignInputs, tasks_done
from iris.crowd.backends.simulated.log import PurchaseLog
from iris.crowd.backends.simulated.population import MAX_COHORTS, VirtualWorker, make_population
from iris.crowd.pages import assemble_page, pick_honeypots
from iris.crowd.spec import SkillRule
from iris.errors import CrowdError
from iris.progress import bar

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
"""Virtual time starts here, so that replays are identical."""

EXAMS: tables.Schema = {
    "worker": pl.String,
    "kind": pl.String,
    "hints": pl.Int32,
    "correct": pl.Int32,
    "total": pl.Int32,
    "passed": pl.Boolean,
}


@dataclass
class WorkerState:
    """One person who passed the exam, as the campaign goes on."""

    worker: VirtualWorker
    done: np.ndarray
    """Per task (in queue order): whether this person has taken it."""
    hp_seen: dict[int, int] = field(default_factory=dict)
    """Honeypot id → times shown to this person."""
    pages_done: int = 0
    """Pages started."""
    banned: bool = False
    answered: list[int] = field(default_factory=list)
    """Queue positions of the real tasks on their submitted pages."""
    submitted: list[str] = field(default_factory=list)
    """Ids of their submitted pages."""


@dataclass
class OpenPage:
    id: str
    tasks: list[int]
    honeypot: list[bool]
    labels: list[int]
    duration: float
    reserved: np.ndarray
    """Queue positions of its real tasks (handed back if the page expires)."""


@dataclass
class SimulationResult:
    answers: pl.DataFrame
    bans: pl.DataFrame
    exams: pl.DataFrame
    """worker, kind, hints (training mistakes), correct, total (exam), passed."""
    pages: int
    cost: float
    complete: bool
    tasks_done: int
    workers: list[VirtualWorker]


class HoneypotPicker(Protocol):
    """Chooses the honeypots of one page for one person; None when this person can get no
    page (for example when a platform never repeats a honeypot and theirs ran out)."""

    def __call__(
        self, honeypots: Sequence[int], *, n: int, state: WorkerState, rng: np.random.Generator
    ) -> list[int] | None: ...


def least_seen_honeypots(
    honeypots: Sequence[int], *, n: int, state: WorkerState, rng: np.random.Generator
) -> list[int] | None:
    """The default picker: the honeypots this person has seen least (re-used once all are seen)."""
    return pick_honeypots(honeypots, n=n, seen=state.hp_seen, rng=rng)


class QualityControl(Protocol):
    """Quality control brought up to date page by page (:class:`iris.crowd.quality.QualityState`,
    :class:`iris.crowd.platform.TolokaQualityControl`)."""

    def add_page(
        self,
        *,
        worker: str,
        page: str,
        tasks: Sequence[int],
        labels: Sequence[int],
        is_honeypot: Sequence[bool],
        submitted_at: datetime,
        duration: float,
    ) -> Any: ...

    def evaluate(self, *, now: datetime) -> pl.DataFrame: ...


class SkillOnTop:
    """A platform's quality control with iris's skill rule (:class:`iris.crowd.quality.SkillState`)
    applied on top of it: the platform bans by its own rules as pages arrive; iris re-estimates
    the skills of the workers a page touched and bans those surely below ``rule.min_skill``. A
    worker banned by either stops counting in anyone's estimate."""

    def __init__(self, inner: Any, gold: Mapping[int, int], rule: SkillRule) -> None:
        self.inner = inner
        self.rule = rule
        self.skills = quality.SkillState(gold)
        self.banned: set[str] = set()
        self._changed: set[str] = set()

    def add_history(self, worker: str, right: Sequence[bool]) -> None:
        add = getattr(self.inner, "add_history", None)
        if add is not None:
            add(worker, right)

    def add_page(
        self,
        *,
        worker: str,
        page: str,
        tasks: Sequence[int],
        labels: Sequence[int],
        is_honeypot: Sequence[bool],
        submitted_at: datetime,
        duration: float,
    ) -> None:
        self.inner.add_page(
            worker=worker,
            page=page,
            tasks=tasks,
            labels=labels,
            is_honeypot=is_honeypot,
            submitted_at=submitted_at,
            duration=duration,
        )
        if worker not in self.banned:
            self._changed |= self.skills.add_page(worker, tasks, labels, is_honeypot)

    def evaluate(self, *, now: datetime) -> pl.DataFrame:
        platform_bans = self.inner.evaluate(now=now)
        for worker in platform_bans["worker"].to_list():
            self._ban(worker)
        rows = []
        for worker in sorted(self._changed - self.banned):
            verdict = self.skills.judge(worker, self.rule)
            if verdict is not None:
                rows.append(
                    {
                        "worker": worker,
                        "rule": "skill",
                        "detail": quality.skill_detail(verdict[0], verdict[2], self.rule),
                        "at": now,
                        "until": now + timedelta(days=self.rule.ban_days),
                    }
                )
        self._changed = set()
        for row in rows:
            self._ban(str(row["worker"]))
        if not rows:
            return platform_bans
        return pl.concat([platform_bans, pl.DataFrame(rows, schema=quality.BANS)])

    def _ban(self, worker: str) -> None:
        if worker not in self.banned:
            self.banned.add(worker)
            self._changed |= self.skills.remove(worker)


class TaskQueue:
    """The tasks in priority order and the answers each still needs."""

    def __init__(self, ids: np.ndarray, overlap: int) -> None:
        self.ids = ids
        self.need = np.full(len(ids), overlap, dtype=np.int64)
        self._first = 0
        """No task before this position needs an answer (so scans start here)."""

    def __len__(self) -> int:
        return len(self.ids)

    def left(self) -> int:
        """Answers still needed over all tasks."""
        return int(self.need.sum())

    def free_for(self, done: np.ndarray, k: int) -> np.ndarray:
        """Positions of the first ``k`` tasks that need an answer and ``done`` does not mark.

        The same as ``np.flatnonzero((need > 0) & ~done)[:k]``, scanning only from the first
        task that still needs an answer, in growing chunks.
        """
        need, n = self.need, len(self.need)
        while self._first < n and need[self._first] <= 0:
            chunk = need[self._first : self._first + 4096]
            open_ = np.flatnonzero(chunk > 0)
            self._first += int(open_[0]) if len(open_) else len(chunk)
        found: list[np.ndarray] = []
        got, start, step = 0, self._first, max(4 * k, 256)
        while got < k and start < n:
            stop = min(start + step, n)
            hits = np.flatnonzero((need[start:stop] > 0) & ~done[start:stop]) + start
            found.append(hits)
            got += len(hits)
            start, step = stop, 2 * step
        return np.concatenate(found)[:k] if found else np.zeros(0, dtype=np.int64)

    def take(self, positions: np.ndarray) -> None:
        self.need[positions] -= 1

    def give_back(self, positions: np.ndarray | list[int]) -> None:
        """One more answer is needed for each position (repeats count)."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions):
            np.add.at(self.need, positions, 1)
            self._first = min(self._first, int(positions.min()))


class Simulation:
    """One campaign with virtual people (see the module docstring).

    Args:
        inputs: spec, tasks (id, source, path, priority) and the ground-truth split.
        truth: id → true label for every task and ground-truth image.
        difficulty: id → difficulty in [0, 1] (missing ids count as 0.3).
        population: ``workers``, ``spammers``, ``fast_clickers``, ``pages_per_worker``, ``seed``
            and optionally ``pace_s`` (wall-clock pause after each page bought).
        log: purchase log to resume from and append to; None keeps everything in memory.
        pick_honeypots: chooses each page's honeypots (a platform's own rule plugs in here).
        quality_control: the rules that ban (default: iris's own, :class:`quality.QualityState`).
        examined: people who took (and were paid for) the exam in an earlier round of this
            campaign: they keep its result (the skill it granted) and are not paid again.
        banned: people banned in an earlier round: they are not let back in.
    """

    def __init__(
        self,
        inputs: CampaignInputs,
        *,
        truth: Mapping[int, int],
        difficulty: Mapping[int, float],
        population: Mapping[str, float | int],
        log: PurchaseLog | None = None,
        pick_honeypots: HoneypotPicker = least_seen_honeypots,
        quality_control: QualityControl | None = None,
        examined: Collection[str] = (),
        banned: Collection[str] = (),
    ) -> None:
        self.spec = inputs.spec
        self.examined_before = frozenset(examined)
        self.banned_before = frozenset(banned)
        self.truth = truth
        self.difficulty = difficulty
        self.population = population
        self.log = log
        self.pick_honeypots = pick_honeypots
        self.seed = int(population["seed"])
        self.pace_s = float(population.get("pace_s", 0.0))
        ids = np.asarray(inputs.tasks.sort("priority", "id")["id"].to_list(), dtype=np.int64)
        missing = [int(t) for t in ids if int(t) not in truth]
        if missing:
            raise CrowdError(f"simulated crowd: no truth for {len(missing)} tasks; first id {missing[0]}")
        self.queue = TaskQueue(ids, self.spec.overlap)
        self.exam_ids: list[int] = inputs.role("exam")["id"].to_list()
        self.training_ids: list[int] = inputs.role("training")["id"].to_list()
        self.honeypots: list[int] = inputs.role("honeypot")["id"].to_list()
        self.gold = inputs.gold
        self.quality = quality_control or quality.QualityState(self.gold, self.spec.rules)
        self.states: dict[str, WorkerState] = {}
        self.open_pages: dict[str, OpenPage] = {}
        self.cohort = -1
        self.exams: list[dict[str, Any]] = []
        self.exam_cost = 0.0
        self.pages_paid: dict[str, float] = {}
        self._events: list[tuple[float, int, Literal["start", "submit"], str]] = []
        self._seq = 0
        self._answers: dict[str, list[Any]] = {name: [] for name in tables.ANSWERS}
        self._bans: list[pl.DataFrame] = []

    # ------------------------------------------------------------ the loop

    def run(self) -> SimulationResult:
        """Run the campaign to its end: every task answered, or no cohort left."""
        self.arrive(0)
        progress = bar(desc="simulated crowd", total=self.spec.pages_for(len(self.queue)), unit="page")
        while (event := self._next_event()) is not None:
            now, kind, wid = event
            if kind == "start":
                self.start_page(now, self.states[wid])
            elif self.submit_page(now, self.states[wid]):
                progress.update(1)
        progress.close()
        return self.result()

    def _push(self, at: float, kind: Literal["start", "submit"], worker: str) -> None:
        heapq.heappush(self._events, (at, self._seq, kind, worker))
        self._seq += 1

    def _next_event(self) -> tuple[float, Literal["start", "submit"], str] | None:
        """The earliest event; the next cohort arrives when none are left and work is."""
        while not self._events:
            if self.queue.left() <= 0 or self.cohort + 1 >= MAX_COHORTS:
                return None
            self.arrive(self.cohort + 1)
        now, _, kind, worker = heapq.heappop(self._events)
        return now, kind, worker

    # ------------------------------------------------------------ the steps

    def arrive(self, cohort: int) -> None:
        """A new cohort takes the training and the exam; those who pass start work."""
        self.cohort = cohort
        p = self.population
        people = make_population(
            int(p["workers"]),
            spammers=float(p["spammers"]),
            fast_clickers=float(p["fast_clickers"]),
            pages_per_worker=int(p["pages_per_worker"]),
            seed=self.seed,
            cohort=cohort,
        )
        for w in people:
            if w.id in self.banned_before:
                continue
            # The exam is seeded by the person: one examined in an earlier round gets the
            # same result, which stands for the skill the platform kept.
            exam = w.take_exam(
                self.training_ids,
                self.exam_ids,
                difficulty=self.difficulty,
                exam_pass=self.spec.exam_pass,
                seed=self.seed,
            )
            if w.id not in self.examined_before:
                self._pay_exam(w)
                self.exams.append(
                    {
                        "worker": w.id,
                        "kind": w.kind,
                        "hints": exam.hints,
                        "correct": exam.correct,
                        "total": exam.total,
                        "passed": exam.passed,
                    }
                )
            if exam.passed:
                # Toloka: the exam's control answers count in the main pool's honeypot window
                # only if both rules set history_size (platform.EXAM_SHARES_HONEYPOT_HISTORY).
                history = platform.exam_history({w.id: exam.right})
                add_history = getattr(self.quality, "add_history", None)
                if history and add_history is not None:
                    add_history(w.id, history[w.id])
                self.states[w.id] = WorkerState(worker=w, done=np.zeros(len(self.queue), dtype=bool))
                self._push(w.arrival, "start", w.id)

    def start_page(self, now: float, st: WorkerState) -> None:
        """The person takes a page and works on it (their answers are drawn now)."""
        w = st.worker
        if st.banned or st.pages_done >= w.pages:
            return
        rng = w.rng(self.seed, st.pages_done, submit=False)
        free = self.queue.free_for(st.done, self.spec.real_per_page)
        if len(free) == 0:
            return  # nothing left for this person: they leave
        hps = self.pick_honeypots(self.honeypots, n=self.spec.honeypots_per_page, state=st, rng=rng)
        if hps is None:
            return  # no page can be made for them: they leave
        self.queue.take(free)
        st.done[free] = True
        for h in hps:
            st.hp_seen[h] = st.hp_seen.get(h, 0) + 1
        real = [int(t) for t in self.queue.ids[free]]
        page = assemble_page(f"{w.id}-p{st.pages_done:03d}", real, hps, rng=rng)
        labels = w.answer(page.tasks, truth=self.truth, difficulty=self.difficulty, rng=rng)
        duration = w.page_seconds(len(page.tasks), rng)
        self.open_pages[w.id] = OpenPage(
            id=page.id,
            tasks=list(page.tasks),
            honeypot=[t in page.honeypots for t in page.tasks],
            labels=labels,
            duration=duration,
            reserved=free,
        )
        st.pages_done += 1
        self._push(now + duration, "submit", w.id)

    def submit_page(self, now: float, st: WorkerState) -> bool:
        """The person submits their open page; False when it expired (they were banned)."""
        w = st.worker
        page = self.open_pages.pop(w.id)
        if st.banned:
            self.queue.give_back(page.reserved)  # expired unanswered: its tasks go back
            return False
        submitted = EPOCH + timedelta(seconds=now)
        self.buy(st, page, submitted)
        self.check_quality(submitted)
        if st.pages_done < w.pages and not st.banned:
            self._push(now + w.break_seconds(w.rng(self.seed, st.pages_done, submit=True)), "start", w.id)
        return True

    def buy(self, st: WorkerState, page: OpenPage, submitted: datetime) -> None:
        """Pay for a page (log it first, or find it in the log on a replay) and keep its answers."""
        wid = st.worker.id
        if self.log is not None:
            prior = self.log.records.get(page.id)
            if prior is None:
                self.log.append(
                    {
                        "key": page.id,
                        "worker": wid,
                        "tasks": page.tasks,
                        "labels": page.labels,
                        "honeypot": page.honeypot,
                        "submitted_at": submitted.isoformat(),
                        "duration": page.duration,
                        "price": self.spec.price_per_page,
                    }
                )
                if self.pace_s:
                    time.sleep(self.pace_s)
            elif prior["tasks"] != page.tasks or prior["labels"] != page.labels:
                raise CrowdError(
                    f"simulated crowd: {self.log.path} holds page {page.id} with other answers than this "
                    "run makes; the spec or inputs changed since it was written — start afresh with "
                    "`iris crowd launch --restart`"
                )
        self.pages_paid[page.id] = self.spec.price_per_page
        st.submitted.append(page.id)
        st.answered.extend(int(p) for p in page.reserved)
        n = len(page.tasks)
        columns = self._answers
        columns["task"].extend(page.tasks)
        columns["worker"].extend([wid] * n)
        columns["label"].extend(page.labels)
        columns["page"].extend([page.id] * n)
        columns["submitted_at"].extend([submitted] * n)
        columns["duration"].extend([page.duration] * n)
        columns["is_honeypot"].extend(page.honeypot)
        self.quality.add_page(
            worker=wid,
            page=page.id,
            tasks=page.tasks,
            labels=page.labels,
            is_honeypot=page.honeypot,
            submitted_at=submitted,
            duration=page.duration,
        )

    def check_quality(self, now: datetime) -> None:
        """Ban whoever the rules catch now; log each ban and apply its consequences."""
        new = self.quality.evaluate(now=now)
        for ban in new.iter_rows(named=True):
            self.ban(ban)
        if new.height:
            self._bans.append(new)

    def ban(self, ban: dict[str, Any]) -> None:
        st = self.states[ban["worker"]]
        st.banned = True
        key = f"ban:{ban['worker']}"
        if self.log is not None and key not in self.log.records:
            self.log.append(
                {"key": key, **ban, "at": ban["at"].isoformat(), "until": ban["until"].isoformat()}
            )
        if self.spec.rules.reissue_banned:
            self.queue.give_back(st.answered)
        if self.spec.rules.reject_banned:
            for page_id in st.submitted:
                self.pages_paid.pop(page_id, None)

    def _pay_exam(self, w: VirtualWorker) -> None:
        price = self.spec.exam_price
        key = f"exam:{w.id}"
        if price > 0 and self.log is not None and key not in self.log.records:
            self.log.append({"key": key, "price": price})
        self.exam_cost += price

    # ------------------------------------------------------------ the outcome

    def result(self) -> SimulationResult:
        """What the campaign bought (also noted in the log as done)."""
        spec = self.spec
        answers = pl.DataFrame(self._answers, schema=tables.ANSWERS)
        bans = pl.concat(self._bans) if self._bans else pl.DataFrame(schema=quality.BANS)
        if spec.rules.reject_banned and bans.height:
            answers = answers.filter(~pl.col("worker").is_in(bans["worker"].to_list()))
        n_done = tasks_done(answers, overlap=spec.overlap)
        result = SimulationResult(
            answers=answers,
            bans=bans,
            exams=pl.DataFrame(self.exams, schema=EXAMS),
            pages=len(self.pages_paid),
            cost=round(sum(self.pages_paid.values()) + self.exam_cost, 4),
            complete=n_done == len(self.queue),
            tasks_done=n_done,
            workers=[s.worker for s in self.states.values()],
        )
        if self.log is not None:
            self.log.append(
                {
                    "done": True,
                    "complete": result.complete,
                    "pages": result.pages,
                    "cost": result.cost,
                    "tasks_done": n_done,
                    "tasks_total": len(self.queue),
                }
            )
        return result


def simulate(
    inputs: CampaignInputs,
    *,
    truth: Mapping[int, int],
    difficulty: Mapping[int, float],
    population: Mapping[str, float | int],
    log: PurchaseLog | None = None,
    rules: Literal["toloka", "iris"] = "toloka",
    examined: Collection[str] = (),
    banned: Collection[str] = (),
) -> SimulationResult:
    """Run the whole campaign with virtual people (see :class:`Simulation` for the arguments).

    Args:
        rules: ``toloka`` follows Toloka's platform rules (:mod:`iris.crowd.platform`: honeypots
            never repeated to a person, Toloka's quality control); ``iris`` iris's own rules
            (honeypots re-used once all are seen, :mod:`iris.crowd.quality`).
    """
    simulation = partial(
        Simulation,
        inputs,
        truth=truth,
        difficulty=difficulty,
        population=population,
        log=log,
        examined=examined,
        banned=banned,
    )
    if rules == "iris":
        return simulation().run()
    spec = inputs.spec
    gold = inputs.gold
    qc = platform.TolokaQualityControl(
        platform.TolokaRules.of(spec.rules, overlap=spec.overlap),
        dict(zip(gold["task"].to_list(), gold["label"].to_list(), strict=True)),
    )
    return simulation(
        pick_honeypots=platform.unseen_honeypots,
        quality_control=SkillOnTop(qc, qc.gold, spec.rules.skill) if spec.rules.skill.on else qc,
    ).run()
