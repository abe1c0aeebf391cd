"""Toloka's platform rules as pure functions, shared by the Toloka backend and the simulated crowd.

What a campaign on Toloka does is decided by the platform, not by iris: which control tasks a
worker may see, how many pages a worker can do, in which order tasks are handed out, the
minimum price, and how each quality-control rule counts. iris configures the pool and then
*models* those rules here, so that a dry run (the simulated crowd) predicts the real
campaign's pages, cost and bans, and so that ``collect`` reports the bans Toloka will have
made rather than the ones iris's own local rules (:mod:`iris.crowd.quality`, used by the
self-hosted web labeler) would make.

Each rule cites where it comes from: toloka-kit 1.2.3's source (``toloka/client/...``) or
Toloka's documentation (the ``Toloka/docs`` repository, ``en/guide/concepts/...``).

Where the two rule sets differ:

============  ======================================  =========================================
rule          iris (quality.py)                        Toloka (this module)
============  ======================================  =========================================
fast          threshold pro-rated on a short page      the same threshold on every task suite
honeypot      last ``window`` main-pool honeypots      last ``window`` control answers, also from
                                                       other pools whose rule sets history_size
majority      agreement with the *others'* strict      an answer is right when at least
              majority; banned workers ignored         ``answer_threshold`` answers match it,
                                                       the worker's own included; everyone counts
when          on the table as it is                    at each submission (a ban is final)
============  ======================================  =========================================
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import polars as pl

from iris.crowd.spec import CampaignSpec, FastRule, HoneypotRule, MajorityRule, QualityRules

MIN_REWARD_PER_PAGE = 0.005
"""Toloka refuses a regular pool paying less per task suite (toloka-kit ``client/pool/__init__.py``,
``Pool.reward_per_assignment``: "the minimum payment per task suite is $0.005")."""

EXAM_SHARES_HONEYPOT_HISTORY = False
"""Whether the exam pool's control-task rule sets ``history_size``.

Toloka: a GoldenSet rule with ``history_size`` also counts control answers "from other pools
where this field is filled in" (``en/guide/concepts/remember-values.md``,
``en/guide/concepts/goldenset.md``). If the exam set it, the main pool's honeypot window would
start full of exam answers and could ban on the first page. iris's exam counts its own pool
only, and the model below reads this flag, so the two cannot drift apart."""

BANS: dict[str, pl.DataType | type[pl.DataType]] = {
    "worker": pl.String,
    "rule": pl.String,
    "detail": pl.String,
    "at": pl.Datetime("us", "UTC"),
    "until": pl.Datetime("us", "UTC"),
}
"""The same BANS table as :data:`iris.crowd.quality.BANS`."""


# ---------------------------------------------------------------- configuration rules


def majority_answer_threshold(overlap: int) -> int:
    """Toloka's ``answer_threshold``: matching answers that make a majority.

    "Accept as majority: the number of matching task responses that is considered the
    majority vote"; the example uses 3 at overlap 5, and the guide warns against a
    threshold below half the overlap or equal to it (``en/guide/concepts/mvote.md``,
    ``en/api/concepts/mv.md``).
    """
    return overlap // 2 + 1


def majority_rule_usable(overlap: int) -> bool:
    """At overlap 1 or 2 a strict majority equals the overlap: the rule says nothing."""
    return majority_answer_threshold(overlap) < overlap


def max_pages_per_worker(n_honeypots: int, honeypots_per_page: int) -> int | None:
    """Pages one worker can get: Toloka never shows a worker the same control task twice,
    and a task suite is only assigned with its full count of control tasks (toloka-kit
    ``client/pool/mixer_config.py``: "there must be enough control and training tasks to
    create a task suite"). None: no limit (no honeypots on a page)."""
    if honeypots_per_page <= 0:
        return None
    return n_honeypots // honeypots_per_page


def honeypots_needed(pages_per_worker: int, honeypots_per_page: int) -> int:
    """Honeypots a worker needs to do ``pages_per_worker`` pages."""
    return max(pages_per_worker, 0) * max(honeypots_per_page, 0)


def honeypot_shortage(
    spec: CampaignSpec, *, n_honeypots: int, n_ground_truth: int, pages_per_worker: int
) -> str | None:
    """A warning when the honeypots cannot supply ``pages_per_worker`` pages per worker, saying
    how many labeled ground-truth images would; None when they can."""
    cap = max_pages_per_worker(n_honeypots, spec.honeypots_per_page)
    if cap is None or cap >= pages_per_worker:
        return None
    needed = spec.training + spec.exam + honeypots_needed(pages_per_worker, spec.honeypots_per_page)
    return (
        f"{n_honeypots} honeypots at {spec.honeypots_per_page} per page let each worker do at most "
        f"{cap} page(s) (Toloka never shows a worker a control task twice), but "
        f"crowd.pages_per_worker plans {pages_per_worker}; {needed} labeled ground-truth images "
        f"(training {spec.training} + exam {spec.exam} + {pages_per_worker} x {spec.honeypots_per_page} "
        f"honeypots) would supply them, {max(needed - n_ground_truth, 0)} more than the "
        f"{n_ground_truth} there are"
    )


def price_problems(spec: CampaignSpec) -> list[str]:
    """Prices Toloka refuses (each a message); empty when both are accepted."""
    out = []
    for key, value in (("crowd.price_per_page", spec.price_per_page), ("crowd.exam_price", spec.exam_price)):
        if value < MIN_REWARD_PER_PAGE:
            out.append(
                f"{key} = {value!r}: Toloka needs at least {MIN_REWARD_PER_PAGE} per page of a regular pool"
            )
    return out


def price_warnings(spec: CampaignSpec) -> list[str]:
    """Prices Toloka accepts but that hurt the campaign."""
    if spec.exam_price != spec.price_per_page:
        # en/guide/concepts/how-to-use-exams.md: "Set the same price per task suite for the exam
        # and the main pool. If the price doesn't match, Tolokers won't be able to immediately
        # start completing general tasks after passing the exam."
        return [
            f"crowd.exam_price ({spec.exam_price}) differs from crowd.price_per_page "
            f"({spec.price_per_page}): Toloka's exam guide says workers then cannot start the main "
            "tasks right after passing"
        ]
    return []


# ---------------------------------------------------------------- how pages are served


def control_tasks_for_page(
    honeypots: Sequence[int], *, n: int, seen: Collection[int], rng: np.random.Generator
) -> list[int] | None:
    """``n`` control tasks this worker has never seen, chosen at random; None when fewer remain
    (then Toloka assigns the worker no further page; see :func:`max_pages_per_worker`)."""
    if n <= 0:
        return []
    unseen = [h for h in honeypots if h not in seen]
    if len(unseen) < n:
        return None
    picked = rng.choice(len(unseen), size=n, replace=False)
    return [int(unseen[i]) for i in sorted(picked.tolist())]


class _SeesHoneypots(Protocol):
    @property
    def hp_seen(self) -> Mapping[int, int]: ...


def unseen_honeypots(
    honeypots: Sequence[int], *, n: int, state: _SeesHoneypots, rng: np.random.Generator
) -> list[int] | None:
    """:func:`control_tasks_for_page` for a worker state that counts the honeypots seen (the
    simulated crowd's honeypot picker on Toloka's rule)."""
    return control_tasks_for_page(honeypots, n=n, seen=state.hp_seen.keys(), rng=rng)


def real_tasks_for_page(
    available: Sequence[int], *, n: int, creation_order: bool, rng: np.random.Generator
) -> list[int]:
    """Up to ``n`` real tasks from ``available`` (listed in creation order).

    toloka-kit ``client/pool/mixer_config.py`` ``MixerConfig.mix_tasks_in_creation_order``:
    True groups tasks "in the order they were created", False chooses them "in a random order".
    A short last page is still assigned (``force_last_assignment`` defaults to True).
    """
    if creation_order or len(available) <= n:
        return list(available[:n])
    picked = rng.choice(len(available), size=n, replace=False)
    return [int(available[i]) for i in sorted(picked.tolist())]


# ---------------------------------------------------------------- quality control as Toloka counts it


@dataclass(frozen=True)
class TolokaRules:
    """The main pool's rules as configured on Toloka (what :func:`evaluate` models)."""

    fast_seconds: int
    """``fast_submit_threshold_seconds`` (an integer on Toloka)."""
    fast_ban_days: int
    honeypot: HoneypotRule
    majority: MajorityRule
    answer_threshold: int
    overlap: int
    use_majority: bool

    @classmethod
    def of(cls, rules: QualityRules, *, overlap: int) -> TolokaRules:
        return cls(
            fast_seconds=round(rules.fast.min_seconds),
            fast_ban_days=rules.fast.ban_days,
            honeypot=rules.honeypot,
            majority=rules.majority,
            answer_threshold=majority_answer_threshold(overlap),
            overlap=overlap,
            use_majority=majority_rule_usable(overlap),
        )


def fast_pages(answers: pl.DataFrame, rule: FastRule) -> pl.DataFrame:
    """Pages submitted faster than the threshold, the same for every page: Toloka's
    AssignmentSubmitTime collector counts "any response submitted in less time than threshold"
    per task suite (toloka-kit ``client/collectors.py``), a short last page included.

    Returns:
        worker, page, duration, threshold, submitted_at — earliest first.
    """
    threshold = float(round(rule.min_seconds))
    pages = answers.group_by("worker", "page").agg(pl.col("duration").max(), pl.col("submitted_at").max())
    return (
        pages.filter(pl.col("duration") < threshold)
        .with_columns(threshold=pl.lit(threshold))
        .select("worker", "page", "duration", "threshold", "submitted_at")
        .sort("submitted_at", "worker", "page")
    )


def majority_events(answers: pl.DataFrame, *, overlap: int, answer_threshold: int) -> pl.DataFrame:
    """Every real-task answer the MajorityVote rule scores, in the order the scores arrive.

    Toloka scores a task "when the task overlap is complete" and only if some answer reached
    ``answer_threshold`` matching responses; an answer is right when its own value did — so
    with overlap 5 and threshold 2, a 2–2–1 split makes four workers right
    (``en/guide/concepts/mvote.md``). Control tasks are left out ("it only takes into account
    regular tasks"). The first ``overlap`` answers of a task decide it; re-issued answers that
    come later are not scored (a simplification: Toloka's CHANGE_OVERLAP raises the overlap).

    Returns:
        worker, at (when the task's overlap completed), right, last (always True).
    """
    real = answers.filter(~pl.col("is_honeypot")).sort("task", "submitted_at", "page")
    real = real.with_columns(rank=pl.int_range(pl.len()).over("task")).filter(pl.col("rank") < overlap)
    per_task = real.group_by("task").agg(
        n=pl.len(), done_at=pl.col("submitted_at").max(), pos=pl.col("label").cast(pl.Int32).sum()
    )
    per_task = per_task.filter(pl.col("n") >= overlap).with_columns(neg=pl.col("n") - pl.col("pos"))
    per_task = per_task.filter(pl.max_horizontal("pos", "neg") >= answer_threshold)
    scored = real.join(per_task, on="task").with_columns(
        right=pl.when(pl.col("label") == 1)
        .then(pl.col("pos") >= answer_threshold)
        .otherwise(pl.col("neg") >= answer_threshold)
    )
    return scored.select("worker", pl.col("done_at").alias("at"), "right", last=pl.lit(True)).sort(
        "worker", "at", maintain_order=True
    )


class TolokaQualityControl:
    """Toloka's main-pool rules, kept up to date page by page (what Toloka does as pages arrive).

    Each page is checked when it is submitted: Toloka re-evaluates a rule after each answer
    ("After each completed control task, it checks", ``en/guide/concepts/remember-values.md``)
    and a ban is for the whole project, so a banned worker's later pages do not exist. Per
    worker it keeps the last ``window`` control answers (GoldenSet ``history_size``) and the
    last ``window`` majority scores (MajorityVote ``history_size``); per task the first
    ``overlap`` answers, scored for everyone once the overlap is complete (see
    :func:`majority_events`). The cost of a page does not grow with the answers before it.
    """

    def __init__(self, rules: TolokaRules, gold: Mapping[int, int]) -> None:
        self.rules = rules
        self.gold = dict(gold)
        self.banned: dict[str, dict[str, object]] = {}
        self._golden: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=rules.honeypot.window))
        self._majority: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=rules.majority.window))
        self._votes: dict[int, list[tuple[str, int]]] = defaultdict(list)
        self._pending: list[dict[str, object]] = []

    def add_history(self, worker: str, right: Sequence[bool]) -> None:
        """Control answers of another pool whose GoldenSet rule shares the history (oldest first)."""
        self._golden[worker].extend(right)

    def _ban(self, worker: str, at: datetime, rule: str, detail: str, days: int) -> dict[str, object] | None:
        if worker in self.banned:
            return None
        row = {"worker": worker, "rule": rule, "detail": detail, "at": at, "until": at + timedelta(days=days)}
        self.banned[worker] = row
        self._pending.append(row)
        return row

    @staticmethod
    def _breach(window: deque[bool], size: int, below: float) -> tuple[int, int] | None:
        if len(window) < size:
            return None
        correct = sum(window)
        return (correct, len(window)) if correct / len(window) < below else None

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
    ) -> list[dict[str, object]]:
        """Count one submitted page; returns the BANS rows it causes (the worker's, and the
        majority bans of others whose tasks it completed)."""
        r = self.rules
        out: list[dict[str, object]] = []

        def ban(w: str, rule: str, detail: str, days: int) -> None:
            row = self._ban(w, submitted_at, rule, detail, days)
            if row is not None:
                out.append(row)

        if duration < r.fast_seconds:
            ban(worker, "fast", f"page {page} in {duration:.1f}s < {r.fast_seconds:.3g}s", r.fast_ban_days)
        window = self._golden[worker]
        for t, label, hp in zip(tasks, labels, is_honeypot, strict=True):
            if hp and int(t) in self.gold:
                window.append(int(label) == self.gold[int(t)])
        hit = self._breach(window, r.honeypot.window, r.honeypot.min_accuracy)
        if hit:
            ban(
                worker,
                "honeypot",
                f"{hit[0]}/{hit[1]} honeypots right < {r.honeypot.min_accuracy:g}",
                r.honeypot.ban_days,
            )
        if not r.use_majority:
            return out
        for t, label, hp in zip(tasks, labels, is_honeypot, strict=True):
            if hp:
                continue
            votes = self._votes[int(t)]
            if len(votes) >= r.overlap:
                continue  # a re-issued answer after the overlap completed: not scored
            votes.append((worker, int(label)))
            if len(votes) < r.overlap:
                continue
            pos = sum(v for _, v in votes)
            neg = len(votes) - pos
            if max(pos, neg) < r.answer_threshold:
                continue
            for w, v in votes:
                scores = self._majority[w]
                scores.append((pos if v == 1 else neg) >= r.answer_threshold)
                hit = self._breach(scores, r.majority.window, r.majority.min_agreement)
                if hit:
                    ban(
                        w,
                        "majority",
                        f"agreed with the majority on {hit[0]}/{hit[1]} < {r.majority.min_agreement:g}",
                        r.majority.ban_days,
                    )
        return out

    def evaluate(self, *, now: datetime | None = None) -> pl.DataFrame:
        """The bans made since the last call (BANS table; ``now`` is not needed: each ban
        carries the moment Toloka made it)."""
        rows, self._pending = self._pending, []
        return pl.DataFrame(rows, schema=BANS) if rows else pl.DataFrame(schema=BANS)

    def frame(self) -> pl.DataFrame:
        """Every ban so far, as a BANS table in the order they happened."""
        rows = sorted(self.banned.values(), key=lambda b: (b["at"], b["worker"]))  # type: ignore[return-value]
        return pl.DataFrame(rows, schema=BANS) if rows else pl.DataFrame(schema=BANS)


def evaluate(
    answers: pl.DataFrame,
    gold: pl.DataFrame,
    rules: TolokaRules,
    *,
    already_banned: Collection[str] = frozenset(),
    history: Mapping[str, Sequence[bool]] | None = None,
) -> pl.DataFrame:
    """The bans Toloka makes on these answers: the pages replayed in submission order through
    :class:`TolokaQualityControl` (per worker the first rule to fire, at the moment it fires).

    Args:
        answers: ANSWERS table of the main pool (every page Toloka counted).
        gold: task, label of the honeypots.
        already_banned: workers whose bans are not reported again.
        history: worker → control answers (right or not, oldest first) from other pools that
            share the GoldenSet history; see :func:`exam_history`.

    Returns:
        BANS table: worker, rule, detail, at (when Toloka bans), until.
    """
    qc = TolokaQualityControl(rules, dict(zip(gold["task"].to_list(), gold["label"].to_list(), strict=True)))
    for worker, right in (history or {}).items():
        qc.add_history(worker, right)
    pages = (
        answers.sort("submitted_at", "page")
        .group_by("page", maintain_order=True)
        .agg(
            pl.col("worker").first(),
            pl.col("submitted_at").first(),
            pl.col("duration").max(),
            pl.col("task"),
            pl.col("label"),
            pl.col("is_honeypot"),
        )
    )
    for p in pages.iter_rows(named=True):
        if p["worker"] in qc.banned:
            continue  # banned before this page: on Toloka it could not have been taken
        qc.add_page(
            worker=p["worker"],
            page=p["page"],
            tasks=p["task"],
            labels=p["label"],
            is_honeypot=p["is_honeypot"],
            submitted_at=p["submitted_at"],
            duration=p["duration"],
        )
    bans = qc.frame()
    return bans.filter(~pl.col("worker").is_in(list(already_banned))) if already_banned else bans


def exam_history(exam_answers: Mapping[str, Sequence[bool]]) -> dict[str, Sequence[bool]] | None:
    """The exam's control answers as GoldenSet history, or None when the exam does not share it
    (:data:`EXAM_SHARES_HONEYPOT_HISTORY`)."""
    return dict(exam_answers) if EXAM_SHARES_HONEYPOT_HISTORY else None
