"""Aggregation of crowd answers with crowd-kit, chosen by name, with worker skills.

Registry :data:`AGGREGATORS`:

=============== ============================================================================
majority-vote   the label most workers gave; confidence = its vote share
wawa            majority vote weighted by each worker's agreement with the majority
dawid-skene     EM over per-worker confusion matrices; honeypot answers enter as gold
                (their posteriors are clamped to the known label at every step)
glad            EM over worker ability and task difficulty
=============== ============================================================================

In: the ANSWERS table (task, worker, label, page, submitted_at, duration, is_honeypot) and
the honeypots' known labels. Out: AGGREGATED (task, label, confidence, n_answers — real
tasks only) and WORKERS (worker, skill, honeypot_accuracy, banned, answers, seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from crowdkit.aggregation import GLAD, DawidSkene, MajorityVote
from crowdkit.aggregation.utils import get_accuracy

from iris import tables
from iris.crowd.quality import honeypot_accuracy
from iris.errors import ConfigError, InputError


@dataclass(frozen=True)
class Fitted:
    """What one aggregator learned."""

    probas: pd.DataFrame
    """Index task, columns 0 and 1: the posterior of each label."""
    skills: dict[str, float]
    """Worker → estimated probability of a right answer."""


def _majority_vote(data: pd.DataFrame, gold: pd.Series, *, n_iter: int) -> Fitted:
    mv = MajorityVote()
    probas = mv.fit_predict_proba(data)
    labels = probas.idxmax(axis=1)
    agree = (data["label"].to_numpy() == labels.loc[data["task"]].to_numpy()).astype(float)
    skills = pd.Series(agree, index=data["worker"]).groupby(level=0).mean()
    return Fitted(probas=probas, skills=skills.to_dict())


def _wawa(data: pd.DataFrame, gold: pd.Series, *, n_iter: int) -> Fitted:
    # crowd-kit's Wawa.predict calls scikit-learn's check_is_fitted, which fails on
    # scikit-learn >= 1.6 (no __sklearn_tags__); its two steps are done here instead.
    first = MajorityVote().fit(data)
    assert first.labels_ is not None
    skills = get_accuracy(data, true_labels=first.labels_, by="worker")
    weighted = MajorityVote().fit(data, skills=skills)
    assert weighted.probas_ is not None
    return Fitted(probas=weighted.probas_, skills={str(k): float(v) for k, v in skills.items()})


def _dawid_skene(data: pd.DataFrame, gold: pd.Series, *, n_iter: int) -> Fitted:
    model = DawidSkene(n_iter=n_iter).fit(data, true_labels=gold if len(gold) else None)
    assert model.probas_ is not None and model.errors_ is not None and model.priors_ is not None
    errors = model.errors_
    priors = model.priors_
    skills: dict[str, float] = {}
    for worker in errors.index.get_level_values("worker").unique():
        matrix = errors.loc[worker]  # rows: observed label, columns: true label
        skills[str(worker)] = float(
            sum(priors.get(c, 0.0) * matrix.at[c, c] for c in matrix.columns if c in matrix.index)
        )
    return Fitted(probas=model.probas_, skills=skills)


def _glad(data: pd.DataFrame, gold: pd.Series, *, n_iter: int) -> Fitted:
    model = GLAD(n_iter=n_iter, silent=True).fit(data)
    assert model.probas_ is not None and model.alphas_ is not None
    # GLAD's ability α gives P(right) = σ(α·β); at the mean task easiness β = 1 it is σ(α).
    skills = {str(w): 1.0 / (1.0 + math.exp(-float(a))) for w, a in model.alphas_.items()}
    return Fitted(probas=model.probas_, skills=skills)


AGGREGATORS: dict[str, Callable[..., Fitted]] = {
    "majority-vote": _majority_vote,
    "wawa": _wawa,
    "dawid-skene": _dawid_skene,
    "glad": _glad,
}


@dataclass(frozen=True)
class Aggregated:
    tasks: pl.DataFrame
    """AGGREGATED: task, label, confidence, n_answers (real tasks only)."""
    workers: pl.DataFrame
    """WORKERS: worker, skill, honeypot_accuracy, banned, answers, seconds."""
    method: str


def aggregate(
    answers: pl.DataFrame,
    *,
    method: str = "dawid-skene",
    gold: pl.DataFrame | None = None,
    banned: Collection[str] = (),
    use_honeypots: bool = True,
    n_iter: int = 100,
) -> Aggregated:
    """Aggregate crowd answers into one label per task, with worker skills.

    Args:
        answers: ANSWERS table.
        method: a name from :data:`AGGREGATORS`.
        gold: task, label — known answers of the honeypots (may be empty).
        banned: workers quality control banned (reported in WORKERS; their answers are kept:
            the aggregator down-weights them by its own estimate).
        use_honeypots: feed honeypot answers to the aggregator (Dawid-Skene also gets their
            known labels as gold).
        n_iter: EM iterations (Dawid-Skene, GLAD).

    Raises:
        ConfigError: unknown method.
        ColumnError: a column of ANSWERS is missing.
        InputError: no answers on real tasks, or labels other than 0/1.
    """
    if method not in AGGREGATORS:
        raise ConfigError(f"aggregate.method: got {method!r}, expected one of {', '.join(AGGREGATORS)}")
    answers = tables.check(answers, tables.ANSWERS, where="aggregate: answers")
    gold = (
        pl.DataFrame(schema={"task": pl.Int64, "label": pl.Int8})
        if gold is None
        else tables.check(gold, {"task": pl.Int64, "label": pl.Int8}, where="aggregate: gold")
    )
    bad = answers.filter(~pl.col("label").is_in([0, 1]) | pl.col("label").is_null())
    if bad.height:
        raise InputError(f"aggregate: {bad.height} answers have a label other than 0/1; first: {bad.row(0)}")
    real = answers.filter(~pl.col("is_honeypot"))
    if real.height == 0:
        raise InputError("aggregate: the answers table holds no answers on real tasks")
    used = answers if use_honeypots else real
    data = used.select("task", "worker", pl.col("label").cast(pl.Int64)).to_pandas()
    gold_series = pd.Series(
        gold["label"].cast(pl.Int64).to_list(),
        index=pd.Index(gold["task"].to_list(), name="task"),
        name="label",
    )
    if not use_honeypots:
        gold_series = gold_series.iloc[:0]
    fitted = AGGREGATORS[method](data, gold_series, n_iter=n_iter)

    probas = fitted.probas.reindex(columns=[0, 1], fill_value=0.0)
    real_tasks = real.group_by("task").agg(n_answers=pl.len().cast(pl.Int32))
    p = probas.reindex(real_tasks["task"].to_list()).fillna(0.5)
    p1 = p[1].to_numpy(dtype=float)
    # Ties go to the negative class, deterministically.
    label = (p1 > 0.5).astype(np.int8)
    confidence = np.where(label == 1, p1, 1.0 - p1)
    task_frame = real_tasks.with_columns(
        label=pl.Series(label, dtype=pl.Int8), confidence=pl.Series(confidence, dtype=pl.Float64)
    ).select(list(tables.AGGREGATED))

    hp = honeypot_accuracy(answers, gold) if gold.height else None
    per_worker = answers.group_by("worker").agg(
        answers=pl.len().cast(pl.Int32),
        seconds=pl.struct("page", "duration").unique().struct.field("duration").sum(),
    )
    workers = per_worker.with_columns(
        skill=pl.col("worker").replace_strict(fitted.skills, default=None, return_dtype=pl.Float64),
        banned=pl.col("worker").is_in(list(banned)),
    )
    if hp is not None:
        workers = workers.join(hp.select("worker", honeypot_accuracy="accuracy"), on="worker", how="left")
    else:
        workers = workers.with_columns(honeypot_accuracy=pl.lit(None, dtype=pl.Float64))
    workers = workers.select(list(tables.WORKERS)).cast(tables.WORKERS).sort("worker")  # type: ignore[arg-type]
    return Aggregated(tasks=task_frame.sort("task"), workers=workers, method=method)
