"""Quality control rules as pure functions over the answers table.

Each rule reads the ANSWERS table (task, worker, label, page, submitted_at, duration,
is_honeypot) and returns the workers it fires on, with the evidence; :func:`evaluate` applies
them all. These are iris's own rules (the self-hosted web labeler applies them).
:class:`QualityState` keeps the same rules up to date page by page, at a cost that does not
grow with the answers before. Toloka counts differently (no pro-rating, rolling windows, its
majority threshold): the Toloka backend and the simulated crowd use :mod:`iris.crowd.platform`,
which models Toloka's rules.

The rules: fast pages, honeypot accuracy, agreement with the majority (off by default) and
skill. The skill rule (:class:`SkillState`) judges a worker by their Dawid-Skene confusion
matrix rather than by raw agreement: on a shortlist of ambiguous images an honest person
disagrees with the others often, but their answers still follow the image, which a spammer's
or a one-answer clicker's do not; the rule bans only when the estimate is surely below
``min_skill``. Toloka has no such rule: the simulated crowd applies it on top of Toloka's
(:class:`iris.crowd.backends.simulated.engine.SkillOnTop`).
"""

from __future__ import annotations

import math
from bisect import insort
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from iris.crowd.spec import FastRule, HoneypotRule, MajorityRule, QualityRules, SkillRule
from iris.tables import BANS


def fast_pages(answers: pl.DataFrame, rule: FastRule) -> pl.DataFrame:
    """Pages submitted faster than ``rule.min_seconds`` (pro-rated for short pages).

    Returns:
        worker, page, duration, threshold, submitted_at — one row per fast page, earliest first.
    """
    pages = answers.group_by("worker", "page").agg(
        pl.col("duration").max(), pl.col("submitted_at").max(), tasks=pl.len()
    )
    share = (pl.col("tasks") / rule.page_size).clip(upper_bound=1.0) if rule.page_size else pl.lit(1.0)
    pages = pages.with_columns(threshold=rule.min_seconds * share)
    return (
        pages.filter(pl.col("duration") < pl.col("threshold"))
        .select("worker", "page", "duration", "threshold", "submitted_at")
        .sort("submitted_at", "worker", "page")
    )


def honeypot_accuracy(
    answers: pl.DataFrame, gold: pl.DataFrame, *, window: int | None = None
) -> pl.DataFrame:
    """Each worker's accuracy on honeypots (on the last ``window`` of them when given).

    Args:
        answers: ANSWERS table.
        gold: task, label — the known answers of the honeypots.
        window: only the latest ``window`` honeypot answers per worker count.

    Returns:
        worker, honeypots (answers counted), correct, accuracy.
    """
    hp = (
        answers.filter(pl.col("is_honeypot"))
        .join(gold.select("task", pl.col("label").alias("truth")), on="task", how="inner")
        .sort("worker", "submitted_at", "task")
    )
    if window is not None:
        hp = hp.group_by("worker", maintain_order=True).tail(window)
    return (
        hp.group_by("worker")
        .agg(
            honeypots=pl.len().cast(pl.Int32),
            correct=(pl.col("label") == pl.col("truth")).sum().cast(pl.Int32),
        )
        .with_columns(accuracy=pl.col("correct") / pl.col("honeypots"))
        .sort("worker")
    )


def low_honeypot_accuracy(answers: pl.DataFrame, gold: pl.DataFrame, rule: HoneypotRule) -> pl.DataFrame:
    """Workers with at least ``rule.window`` honeypot answers whose accuracy on the last
    ``rule.window`` is below ``rule.min_accuracy``."""
    acc = honeypot_accuracy(answers, gold, window=rule.window)
    return acc.filter((pl.col("honeypots") >= rule.window) & (pl.col("accuracy") < rule.min_accuracy))


def majority_agreement(
    answers: pl.DataFrame, *, window: int | None = None, ignore: Collection[str] = (), min_others: int = 1
) -> pl.DataFrame:
    """Each worker's agreement with the majority of the *other* workers on the same task.

    A task counts for a worker only where at least ``min_others`` others answered and they
    reached a strict majority (a 1–1 tie among them says nothing). Honeypots are left out:
    they have their own rule. Answers of the ``ignore`` workers (those already banned) do not
    count towards anyone's majority: a good worker must not be banned for disagreeing with a
    spammer.

    Returns:
        worker, evaluated (tasks counted), agreed, agreement.
    """
    real = answers.filter(~pl.col("is_honeypot")).select("task", "worker", "label", "submitted_at")
    if ignore:
        real = real.filter(~pl.col("worker").is_in(list(ignore)))
    per_task = real.group_by("task").agg(n=pl.len(), pos=pl.col("label").cast(pl.Int32).sum())
    joined = real.join(per_task, on="task").with_columns(
        others=pl.col("n") - 1,
        others_pos=pl.col("pos") - pl.col("label").cast(pl.Int32),
    )
    decided = joined.filter(
        (pl.col("others") >= max(min_others, 1)) & (2 * pl.col("others_pos") != pl.col("others"))
    )
    decided = decided.with_columns(majority=(2 * pl.col("others_pos") > pl.col("others")).cast(pl.Int8)).sort(
        "worker", "submitted_at", "task"
    )
    if window is not None:
        decided = decided.group_by("worker", maintain_order=True).tail(window)
    return (
        decided.group_by("worker")
        .agg(
            evaluated=pl.len().cast(pl.Int32),
            agreed=(pl.col("label") == pl.col("majority")).sum().cast(pl.Int32),
        )
        .with_columns(agreement=pl.col("agreed") / pl.col("evaluated"))
        .sort("worker")
    )


def low_majority_agreement(
    answers: pl.DataFrame, rule: MajorityRule, *, ignore: Collection[str] = ()
) -> pl.DataFrame:
    """Workers with at least ``rule.window`` decided tasks whose agreement with the others'
    majority over the last ``rule.window`` is below ``rule.min_agreement``."""
    agr = majority_agreement(answers, window=rule.window, ignore=ignore, min_others=rule.min_others)
    return agr.filter((pl.col("evaluated") >= rule.window) & (pl.col("agreement") < rule.min_agreement))


# ---------------------------------------------------------------- skill (Dawid-Skene)


SKILL_PRIOR_ANSWERS = 2.0
"""Pseudo-answers per class, at :data:`SKILL_PRIOR_ACCURACY`, in every worker's confusion
matrix: a newcomer's votes count as a fair worker's until their own answers say more."""
SKILL_PRIOR_ACCURACY = 0.7
SKILL_REFRESH_GROWTH = 1.25
"""Every vote is re-weighted with the latest skills whenever the answers have grown by this
factor since the last time (so the re-weighting costs O(answers) in all, amortized)."""
_CLIP = 1e-3


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass
class _Confusion:
    """One worker's soft counts ``n[true][answer]`` against the others' posterior."""

    n00: float = 0.0
    n01: float = 0.0
    n10: float = 0.0
    n11: float = 0.0
    evidence: float = 0.0
    """Sum of (2q − 1)² over the counted answers: what the counts are worth in decided tasks."""
    answers: int = 0
    """Answers counted (real tasks that others answered too, and honeypots)."""

    def add(self, q: float, label: int, sign: int) -> None:
        if label:
            self.n11 += sign * q
            self.n01 += sign * (1.0 - q)
        else:
            self.n10 += sign * q
            self.n00 += sign * (1.0 - q)
        self.evidence += sign * (2.0 * q - 1.0) ** 2
        self.answers += sign

    def rates(self) -> tuple[float, float]:
        """Sensitivity and specificity, corrected for the others' uncertainty.

        Scored against a posterior q rather than the truth, a rate comes out pulled towards
        1/2 by the factor c = mean (2q − 1)² (for a calibrated q); dividing the pull out gives
        an estimate whatever the images' difficulty. Without this, the votes' weights shrink
        with the rates and the posteriors with the weights, until nobody's answers say anything.
        Then both are drawn towards :data:`SKILL_PRIOR_ACCURACY` by
        :data:`SKILL_PRIOR_ANSWERS` pseudo-answers each.
        """
        pos, neg = self.n10 + self.n11, self.n00 + self.n01
        c = self.evidence / self.answers if self.answers > 0 else 0.0
        out = []
        for right, total in ((self.n11, pos), (self.n00, neg)):
            n_eff = total * c
            rate = 0.5 + (right / total - 0.5) / c if total > 0 and c > 0 else 0.5
            rate = (rate * n_eff + SKILL_PRIOR_ANSWERS * SKILL_PRIOR_ACCURACY) / (n_eff + SKILL_PRIOR_ANSWERS)
            out.append(min(max(rate, _CLIP), 1 - _CLIP))
        return out[0], out[1]

    def weights(self) -> tuple[float, float]:
        """Log-likelihood ratio (true 1 against true 0) of this worker answering 0, and 1."""
        sens, spec = self.rates()
        return math.log((1 - sens) / spec), math.log(sens / (1 - spec))

    def skill(self) -> float:
        """Sensitivity + specificity − 1 of the confusion matrix (0 for answers that do not
        depend on the image, 1 for always right), divided by the posteriors' informativeness
        c = evidence / answers (see :meth:`rates`); no prior."""
        pos, neg = self.n10 + self.n11, self.n00 + self.n01
        if self.evidence <= 0 or pos <= 0 or neg <= 0:
            return 0.0
        j = self.n11 / pos + self.n00 / neg - 1.0
        return j * self.answers / self.evidence


class SkillState:
    """Per-worker Dawid-Skene confusion matrices (two-coin, binary), kept up to date page by page.

    Each answer is scored against the posterior of its task given the *other* workers' answers
    (leave-one-out, each vote weighted by its worker's confusion matrix, a flat class prior), or
    against the known label on a honeypot. A worker's skill is the confusion matrix's
    sensitivity + specificity − 1 (Youden's J) scaled back by how decided the posteriors were
    (:meth:`_Confusion.skill`): about 0 for random or one-sided answers, however hard the images;
    an honest worker's is positive even on a shortlist where everyone errs often.

    A new answer re-scores the answers to its task (a few); every vote is re-weighted with the
    latest skills when the answers have grown by :data:`SKILL_REFRESH_GROWTH`. So a page costs
    O(its tasks × overlap), amortized.
    """

    def __init__(self, gold: Mapping[int, int]) -> None:
        self.gold = dict(gold)
        self._conf: dict[str, _Confusion] = defaultdict(_Confusion)
        self._votes: dict[int, dict[str, int]] = defaultdict(dict)
        """task → worker → label, of the counted (not removed) workers."""
        self._scored: dict[int, dict[str, float]] = defaultdict(dict)
        """task → worker → the posterior q their answer is counted against."""
        self._tasks_of: dict[str, list[int]] = defaultdict(list)
        self._n_votes = 0
        self._refresh_at = 16

    def confusion(self, worker: str) -> _Confusion:
        return self._conf[worker]

    def add_page(
        self, worker: str, tasks: Sequence[int], labels: Sequence[int], is_honeypot: Sequence[bool]
    ) -> set[str]:
        """Count one page; returns the workers whose estimate changed."""
        changed = {worker}
        conf = self._conf[worker]
        for task, label, hp in zip(tasks, labels, is_honeypot, strict=True):
            task, label = int(task), int(label)
            if hp:
                if task in self.gold:
                    conf.add(float(self.gold[task]), label, +1)
                continue
            votes = self._votes[task]
            if worker in votes:
                continue  # one answer per worker and task counts
            votes[worker] = label
            self._tasks_of[worker].append(task)
            self._n_votes += 1
            changed.update(votes)
            self._rescore(task)
        if self._n_votes >= self._refresh_at:
            self._refresh_at = max(math.ceil(self._n_votes * SKILL_REFRESH_GROWTH), self._n_votes + 1)
            changed |= self.refresh()
        return changed

    def remove(self, worker: str) -> set[str]:
        """Stop counting a worker's answers (towards anyone's posterior); returns whom it changed."""
        changed: set[str] = set()
        for task in self._tasks_of.pop(worker, []):
            votes = self._votes[task]
            if votes.pop(worker, None) is not None:
                self._n_votes -= 1
            self._scored[task].pop(worker, None)
            changed.update(votes)
            self._rescore(task)
        self._conf.pop(worker, None)
        return changed

    def refresh(self) -> set[str]:
        """Re-score every answer with the current weights (one EM sweep)."""
        weights = {w: c.weights() for w, c in self._conf.items()}
        for task in self._votes:
            self._rescore(task, weights)
        return set(self._conf)

    def _rescore(self, task: int, weights: Mapping[str, tuple[float, float]] | None = None) -> None:
        votes = self._votes[task]
        scored = self._scored[task]
        w = {
            u: (weights[u] if weights is not None and u in weights else self._conf[u].weights())
            for u in votes
        }
        total = sum(w[u][label] for u, label in votes.items())
        for u, label in votes.items():
            conf = self._conf[u]
            old = scored.pop(u, None)
            if old is not None:
                conf.add(old, label, -1)
            if len(votes) < 2:
                continue  # nobody else answered: the task says nothing about u yet
            q = _sigmoid(total - w[u][label])
            scored[u] = q
            conf.add(q, label, +1)

    def judge(self, worker: str, rule: SkillRule) -> tuple[float, float, int] | None:
        """(skill, its upper bound, answers) when ``rule`` bans this worker now, else None."""
        conf = self._conf.get(worker)
        if not rule.on or conf is None or conf.answers < rule.min_answers or conf.evidence <= 0:
            return None
        skill = conf.skill()
        upper = skill + rule.confidence / math.sqrt(conf.evidence)
        return (skill, upper, conf.answers) if upper < rule.min_skill else None

    def table(self) -> pl.DataFrame:
        """worker, answers (counted), evidence (sum of (2q − 1)²), skill."""
        rows = [
            {
                "worker": w,
                "answers": c.answers,
                "evidence": c.evidence,
                "skill": c.skill(),
            }
            for w, c in sorted(self._conf.items())
        ]
        schema = {"worker": pl.String, "answers": pl.Int64, "evidence": pl.Float64, "skill": pl.Float64}
        return pl.DataFrame(rows, schema=schema)


def _pages_in_order(answers: pl.DataFrame) -> pl.DataFrame:
    """One row per page, in submission order: worker, page, task, label, is_honeypot (lists)."""
    return (
        answers.sort("submitted_at", "page", maintain_order=True)
        .group_by("page", maintain_order=True)
        .agg(pl.col("worker").first(), pl.col("task"), pl.col("label"), pl.col("is_honeypot"))
    )


def worker_skills(answers: pl.DataFrame, gold: pl.DataFrame, *, ignore: Collection[str] = ()) -> pl.DataFrame:
    """Each worker's Dawid-Skene skill on these answers (pages replayed in submission order
    through :class:`SkillState`, then one more sweep), the ``ignore`` workers' answers left out.

    Returns:
        worker, answers (counted), evidence, skill.
    """
    state = SkillState(dict(zip(gold["task"].to_list(), gold["label"].to_list(), strict=True)))
    for p in _pages_in_order(answers).iter_rows(named=True):
        if p["worker"] not in ignore:
            state.add_page(p["worker"], p["task"], p["label"], p["is_honeypot"])
    state.refresh()
    return state.table()


def low_skill(
    answers: pl.DataFrame, gold: pl.DataFrame, rule: SkillRule, *, ignore: Collection[str] = ()
) -> pl.DataFrame:
    """Workers the skill rule bans on these answers (their estimate from :func:`worker_skills`).

    Returns:
        worker, answers, evidence, skill — one row per worker caught.
    """
    table = worker_skills(answers, gold, ignore=ignore) if rule.on else pl.DataFrame()
    if not rule.on or table.height == 0:
        return pl.DataFrame(
            schema={"worker": pl.String, "answers": pl.Int64, "evidence": pl.Float64, "skill": pl.Float64}
        )
    upper = pl.col("skill") + rule.confidence / pl.col("evidence").sqrt()
    return table.filter(
        (pl.col("answers") >= rule.min_answers) & (pl.col("evidence") > 0) & (upper < rule.min_skill)
    )


def skill_detail(skill: float, answers: int, rule: SkillRule) -> str:
    return f"skill {skill:.2f} over {answers} answers, surely < {rule.min_skill:g}"


def _fast_detail(page: str, duration: float, threshold: float) -> str:
    return f"page {page} in {duration:.1f}s < {threshold:.3g}s"


def _honeypot_detail(correct: int, honeypots: int, rule: HoneypotRule) -> str:
    return f"{correct}/{honeypots} honeypots right < {rule.min_accuracy:g}"


def _majority_detail(agreed: int, evaluated: int, rule: MajorityRule) -> str:
    return f"agreed with the majority on {agreed}/{evaluated} < {rule.min_agreement:g}"


class _Bans:
    """Ban rows of one evaluation: one per newly caught worker, the first rule that fires wins."""

    def __init__(self, rules: QualityRules, now: datetime, already: Collection[str]) -> None:
        self.rules = rules
        self.now = now
        self.caught: set[str] = set(already)
        self.rows: list[dict[str, object]] = []

    def add(self, worker: str, rule: str, detail: str) -> None:
        if worker in self.caught:
            return
        days = {
            "fast": self.rules.fast.ban_days,
            "honeypot": self.rules.honeypot.ban_days,
            "majority": self.rules.majority.ban_days,
            "skill": self.rules.skill.ban_days,
        }[rule]
        self.caught.add(worker)
        self.rows.append(
            {
                "worker": worker,
                "rule": rule,
                "detail": detail,
                "at": self.now,
                "until": self.now + timedelta(days=days),
            }
        )

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=BANS) if self.rows else pl.DataFrame(schema=BANS)


def evaluate(
    answers: pl.DataFrame,
    gold: pl.DataFrame,
    rules: QualityRules,
    *,
    now: datetime,
    already_banned: set[str] | frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Apply every rule; one ban per newly caught worker (the first rule that fires wins).

    This re-reads every answer: right for a report on collected answers, quadratic when
    called after every page. :class:`QualityState` gives the same bans page by page (the skill
    rule's estimate there is online, see its docstring). The skill rule comes last, on the
    answers of the workers no other rule caught.

    Returns:
        BANS table: worker, rule, detail, at (= ``now``), until.
    """
    bans = _Bans(rules, now, already_banned)
    for row in fast_pages(answers, rules.fast).iter_rows(named=True):
        bans.add(row["worker"], "fast", _fast_detail(row["page"], row["duration"], row["threshold"]))
    for row in low_honeypot_accuracy(answers, gold, rules.honeypot).iter_rows(named=True):
        bans.add(
            row["worker"], "honeypot", _honeypot_detail(row["correct"], row["honeypots"], rules.honeypot)
        )
    majority = low_majority_agreement(answers, rules.majority, ignore=already_banned)
    for row in majority.iter_rows(named=True):
        bans.add(row["worker"], "majority", _majority_detail(row["agreed"], row["evaluated"], rules.majority))
    if rules.skill.on:
        for row in low_skill(answers, gold, rules.skill, ignore=bans.caught).iter_rows(named=True):
            bans.add(row["worker"], "skill", skill_detail(row["skill"], row["answers"], rules.skill))
    return bans.frame()


# ---------------------------------------------------------------- incremental


@dataclass
class _PageSeen:
    worker: str
    page: str
    submitted_at: datetime
    duration: float
    tasks: int


@dataclass
class _Tally:
    """Counted (not banned) real answers of one task: how many, how many positive, by whom."""

    n: int = 0
    pos: int = 0
    workers: list[str] = field(default_factory=list)


class QualityState:
    """The rules of :func:`evaluate`, kept up to date page by page.

    Feed every page once (:meth:`add_page`, or :meth:`add_answers` for a table of whole
    pages), then call :meth:`evaluate`: it returns the same bans as
    ``evaluate(all answers so far, gold, rules, now=now, already_banned=every ban it returned
    before)``, at a cost that depends on the new pages, not on the answers before them.

    What it keeps: per worker, their honeypot answers (the window is the last
    ``honeypot.window``) and their real answers (the window is the last ``majority.window``
    where the others reached a majority); per task, the tally of counted answers. Only the
    workers whose inputs changed are re-checked: the new page's worker for the fast and
    honeypot rules; for the majority rule also everyone who answered one of its tasks, and
    everyone who shared a task with a worker banned at the previous evaluation (a banned
    worker's answers stop counting towards anyone's majority from then on, as in
    :func:`evaluate` with ``already_banned``).

    A page's answers arrive together (one worker, one ``submitted_at``, one ``duration``).

    The skill rule is the exception to "the same bans as :func:`evaluate`": its estimate is
    online (each page re-scores its tasks, and every vote is re-weighted now and then,
    :class:`SkillState`), while :func:`evaluate` replays all the pages and sweeps once more; the
    two estimates are close, not equal. Its inputs change for the page's worker, everyone who
    answered one of its tasks, and everyone who shared a task with a worker just banned.
    """

    def __init__(self, gold: pl.DataFrame, rules: QualityRules) -> None:
        self.rules = rules
        self.banned: set[str] = set()
        """Every worker :meth:`evaluate` has banned."""
        self._gold: dict[int, int] = {
            int(t): int(label)
            for t, label in zip(gold["task"].to_list(), gold["label"].to_list(), strict=True)
        }
        self._honeypots: dict[str, list[tuple[datetime, int, bool]]] = defaultdict(list)
        """worker → (submitted_at, task, right) of their gold honeypot answers, in order."""
        self._real: dict[str, list[tuple[datetime, int, int]]] = defaultdict(list)
        """worker → (submitted_at, task, label) of their real answers, in order."""
        self._tally: dict[int, _Tally] = defaultdict(_Tally)
        self._new_pages: list[_PageSeen] = []
        self._hp_changed: set[str] = set()
        self._majority_changed: set[str] = set()
        self.skills: SkillState | None = SkillState(self._gold) if rules.skill.on else None
        """The skill rule's estimates (None when the rule is off)."""
        self._skill_changed: set[str] = set()

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
        """Take one page of answers into the state (checked at the next :meth:`evaluate`)."""
        if worker in self.banned:
            return  # no rule bans twice, and a banned worker's answers count for nobody's majority
        self._new_pages.append(_PageSeen(worker, page, submitted_at, float(duration), len(tasks)))
        if self.skills is not None:
            self._skill_changed |= self.skills.add_page(worker, tasks, labels, is_honeypot)
        for task, label, hp in zip(tasks, labels, is_honeypot, strict=True):
            task, label = int(task), int(label)
            if hp:
                if task in self._gold:
                    insort(self._honeypots[worker], (submitted_at, task, label == self._gold[task]))
                    self._hp_changed.add(worker)
                continue
            insort(self._real[worker], (submitted_at, task, label))
            tally = self._tally[task]
            tally.n += 1
            tally.pos += label
            tally.workers.append(worker)
            self._majority_changed.update(tally.workers)

    def add_answers(self, answers: pl.DataFrame) -> None:
        """Take whole pages from an ANSWERS table (in the order their pages first appear)."""
        for (worker, page), rows in answers.group_by("worker", "page", maintain_order=True):
            self.add_page(
                worker=str(worker),
                page=str(page),
                tasks=rows["task"].to_list(),
                labels=rows["label"].to_list(),
                is_honeypot=rows["is_honeypot"].to_list(),
                submitted_at=rows["submitted_at"].max(),  # type: ignore[arg-type]
                duration=float(rows["duration"].max()),  # type: ignore[arg-type]
            )

    def evaluate(self, *, now: datetime) -> pl.DataFrame:
        """The workers caught since the last call, as :func:`evaluate` would ban them.

        Returns:
            BANS table: worker, rule, detail, at (= ``now``), until.
        """
        rules = self.rules
        bans = _Bans(rules, now, self.banned)
        fast = rules.fast
        for seen in sorted(self._new_pages, key=lambda p: (p.submitted_at, p.worker, p.page)):
            share = min(seen.tasks / fast.page_size, 1.0) if fast.page_size else 1.0
            threshold = fast.min_seconds * share
            if seen.duration < threshold:
                bans.add(seen.worker, "fast", _fast_detail(seen.page, seen.duration, threshold))
        hp_rule = rules.honeypot
        for worker in sorted(self._hp_changed - self.banned):
            window = self._honeypots[worker][-hp_rule.window :]
            correct = sum(right for _, _, right in window)
            if len(window) >= hp_rule.window and correct / len(window) < hp_rule.min_accuracy:
                bans.add(worker, "honeypot", _honeypot_detail(correct, len(window), hp_rule))
        m_rule = rules.majority
        for worker in sorted(self._majority_changed - self.banned):
            agreed, evaluated = self._agreement(worker)
            if evaluated >= m_rule.window and agreed / evaluated < m_rule.min_agreement:
                bans.add(worker, "majority", _majority_detail(agreed, evaluated, m_rule))
        if self.skills is not None:
            for worker in sorted(self._skill_changed - self.banned):
                verdict = self.skills.judge(worker, rules.skill)
                if verdict is not None:
                    bans.add(worker, "skill", skill_detail(verdict[0], verdict[2], rules.skill))
        self._new_pages.clear()
        self._hp_changed.clear()
        self._majority_changed.clear()
        self._skill_changed.clear()
        for row in bans.rows:
            self._ban(str(row["worker"]))
        return bans.frame()

    def _agreement(self, worker: str) -> tuple[int, int]:
        """Agreed and evaluated over the worker's last ``majority.window`` decided tasks."""
        need = max(self.rules.majority.min_others, 1)
        window = self.rules.majority.window
        agreed = evaluated = 0
        for _, task, label in reversed(self._real[worker]):
            tally = self._tally[task]
            others, others_pos = tally.n - 1, tally.pos - label
            if others < need or 2 * others_pos == others:
                continue
            evaluated += 1
            agreed += int(label == int(2 * others_pos > others))
            if evaluated == window:
                break
        return agreed, evaluated

    def _ban(self, worker: str) -> None:
        """From the next evaluation on, the worker's answers count for nobody's majority."""
        self.banned.add(worker)
        for _, task, label in self._real.pop(worker, []):
            tally = self._tally[task]
            tally.n -= 1
            tally.pos -= label
            tally.workers.remove(worker)
            self._majority_changed.update(tally.workers)
        self._honeypots.pop(worker, None)
        if self.skills is not None:
            self._skill_changed |= self.skills.remove(worker)
