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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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


def _first_breach(events: pl.DataFrame, *, window: int, below: float) -> dict[str, tuple[datetime, int, int]]:
    """Per worker, the first event at which the last ``window`` events hold at least ``window``
    of them and a right-share below ``below``: Toloka re-evaluates a rule after each answer
    (``en/guide/concepts/remember-values.md``, "After each completed control task, it checks").

    Args:
        events: worker, at, right (bool), sorted by worker then time; ``last`` (bool) marks
            the events at which the rule is checked.
    """
    out: dict[str, tuple[datetime, int, int]] = {}
    for (worker,), group in events.group_by("worker", maintain_order=True):
        right = group["right"].to_numpy().astype(np.int64)
        at = group["at"].to_list()
        check = group["last"].to_list()
        csum = np.concatenate([[0], np.cumsum(right)])
        for i in range(len(right)):
            n = min(i + 1, window)
            if not check[i] or n < window:
                continue
            correct = int(csum[i + 1] - csum[i + 1 - n])
            if correct / n < below:
                out[str(worker)] = (at[i], correct, n)
                break
    return out


def honeypot_events(
    answers: pl.DataFrame, gold: pl.DataFrame, *, history: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Every control answer the main pool's GoldenSet rule counts, in time order.

    Args:
        answers: ANSWERS table of the main pool.
        gold: task, label of its honeypots.
        history: worker, at, right — control answers from other pools whose rule also sets
            ``history_size`` (the exam, when :data:`EXAM_SHARES_HONEYPOT_HISTORY`), or None.

    Returns:
        worker, at, right, last (True where the rule is checked: the end of a main-pool page).
    """
    hp = (
        answers.filter(pl.col("is_honeypot"))
        .join(gold.select("task", pl.col("label").alias("truth")), on="task", how="inner")
        .sort("worker", "submitted_at", "page", "task")
        .select(
            "worker",
            pl.col("submitted_at").alias("at"),
            right=pl.col("label") == pl.col("truth"),
            page="page",
        )
    )
    hp = hp.with_columns(last=pl.col("page") != pl.col("page").shift(-1).over("worker").fill_null("")).drop(
        "page"
    )
    if history is not None and history.height:
        extra = history.select(
            "worker", pl.col("at").cast(pl.Datetime("us", "UTC")), pl.col("right").cast(pl.Boolean)
        ).with_columns(last=pl.lit(False))
        hp = pl.concat([extra, hp])
    return hp.sort("worker", "at", maintain_order=True)


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


def evaluate(
    answers: pl.DataFrame,
    gold: pl.DataFrame,
    rules: TolokaRules,
    *,
    already_banned: Collection[str] = frozenset(),
    history: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The bans Toloka makes on these answers: per worker the first rule to fire, at the moment
    it fires (a ban is for the whole project, so nothing the worker did later exists).

    Args:
        answers: ANSWERS table of the main pool (every page Toloka counted).
        gold: task, label of the honeypots.
        already_banned: workers left out (banned earlier).
        history: control answers from other pools sharing the GoldenSet history (see
            :func:`honeypot_events`).

    Returns:
        BANS table: worker, rule, detail, at (when Toloka bans), until.
    """
    found: dict[str, tuple[datetime, str, str, int]] = {}

    def add(worker: str, at: datetime, rule: str, detail: str, days: int) -> None:
        if worker in already_banned:
            return
        if worker not in found or at < found[worker][0]:
            found[worker] = (at, rule, detail, days)

    fast = fast_pages(answers, FastRule(min_seconds=rules.fast_seconds, ban_days=rules.fast_ban_days))
    for row in fast.unique("worker", keep="first", maintain_order=True).iter_rows(named=True):
        add(
            row["worker"],
            row["submitted_at"],
            "fast",
            f"page {row['page']} in {row['duration']:.1f}s < {row['threshold']:.3g}s",
            rules.fast_ban_days,
        )
    hp_rule = rules.honeypot
    for worker, (at, correct, n) in _first_breach(
        honeypot_events(answers, gold, history=history), window=hp_rule.window, below=hp_rule.min_accuracy
    ).items():
        add(
            worker,
            at,
            "honeypot",
            f"{correct}/{n} honeypots right < {hp_rule.min_accuracy:g}",
            hp_rule.ban_days,
        )
    if rules.use_majority:
        mv = rules.majority
        events = majority_events(answers, overlap=rules.overlap, answer_threshold=rules.answer_threshold)
        for worker, (at, correct, n) in _first_breach(
            events, window=mv.window, below=mv.min_agreement
        ).items():
            add(
                worker,
                at,
                "majority",
                f"agreed with the majority on {correct}/{n} < {mv.min_agreement:g}",
                mv.ban_days,
            )
    rows = [
        {"worker": w, "rule": rule, "detail": detail, "at": at, "until": at + timedelta(days=days)}
        for w, (at, rule, detail, days) in sorted(found.items(), key=lambda kv: (kv[1][0], kv[0]))
    ]
    return pl.DataFrame(rows, schema=BANS) if rows else pl.DataFrame(schema=BANS)


def exam_history(exam_answers: Mapping[str, Sequence[tuple[datetime, bool]]]) -> pl.DataFrame | None:
    """The exam's control answers as GoldenSet history, or None when the exam does not share it."""
    if not EXAM_SHARES_HONEYPOT_HISTORY:
        return None
    rows = [{"worker": w, "at": at, "right": ok} for w, items in exam_answers.items() for at, ok in items]
    return pl.DataFrame(
        rows, schema={"worker": pl.String, "at": pl.Datetime("us", "UTC"), "right": pl.Boolean}
    )
