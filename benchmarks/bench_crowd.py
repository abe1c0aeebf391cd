"""The simulated crowd on a shortlist: aggregated accuracy per method, bans, cost.

    python benchmarks/bench_crowd.py                        # synthetic: 3,000 tasks, 200 GT
    python benchmarks/bench_crowd.py --spammers 0.3 --seeds 0 1 2
    python benchmarks/bench_crowd.py --workdir WORK         # a real run's shortlist + answer key

Synthetic shortlist: ``--tasks`` pool images with a seeded true label and a kNN vote share
(``knn_share ~ Beta(5, 2)``, so difficulty ``1 − knn_share`` averages 0.29) written as the
``pseudolabels`` table, ``--gt`` ground-truth images, and an answer key CSV. With
``--workdir`` the images, shortlist and pseudolabels tables of that work directory are
copied (its own crowd state is left alone) and the truth comes from its
``crowd.answer_key``.

Each campaign runs twice through ``iris.crowd.campaign`` (launch, collect): with the
quality-control rules of ``[crowd]`` and with them switched off. Every aggregation method
then labels the tasks and is scored against the truth. Printed per campaign: accuracy per
method, spammers/fast clickers/honest workers who worked and how many were banned, pages,
answers, cost and seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("IRIS_PROGRESS", "0")

import numpy as np
import polars as pl

from iris import tables
from iris.cli._common import echo_table
from iris.config import Settings
from iris.crowd import campaign
from iris.crowd.aggregation import AGGREGATORS, aggregate
from iris.crowd.backends.simulated import MAX_COHORTS, make_population, match_truth, read_answer_key
from iris.workdir import Workdir, find_workdir, init_workdir


def synthesize(root: Path, *, n_tasks: int, n_gt: int, seed: int) -> tuple[Workdir, Path]:
    """A work directory with images, shortlist and pseudolabels tables, and an answer key."""
    wd = init_workdir(root)
    rng = np.random.default_rng([seed, 99])
    n = n_gt + n_tasks
    ids = np.arange(1, n + 1)
    labels = rng.integers(0, 2, n)
    sources = [f"https://bench.example/{i}.png" for i in ids]
    images = pl.DataFrame(
        {
            "id": ids,
            "source": sources,
            "path": [f"images/{i}.png" for i in ids],
            "split": ["gt"] * n_gt + ["pool"] * n_tasks,
            "label": [int(v) for v in labels[:n_gt]] + [None] * n_tasks,
            "width": 28,
            "height": 28,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]
    tables.write(images, wd.table("images"))
    share = rng.beta(5.0, 2.0, n_tasks)
    tables.write(
        pl.DataFrame(
            {
                "id": ids[n_gt:],
                "knn_label": None,
                "knn_share": share,
                "cluster": 0,
                "cluster_label": None,
                "auto_label": None,
                "status": "problematic",
            }
        ).cast(tables.PSEUDOLABELS),  # type: ignore[arg-type]
        wd.table("pseudolabels"),
    )
    # Hardest first, as the shortlist's priority would put them.
    order = np.argsort(share, kind="stable")
    priority = np.empty(n_tasks, dtype=np.int32)
    priority[order] = np.arange(n_tasks)
    tables.write(
        pl.DataFrame(
            {"id": ids[n_gt:], "reason": "problematic", "problematic_neighbours": 0, "priority": priority}
        ).cast(tables.SHORTLIST),  # type: ignore[arg-type]
        wd.table("shortlist"),
    )
    key = root / "answer_key.csv"
    pl.DataFrame(
        {
            "downloadUrl": sources[n_gt:],
            "split": "pool",
            "is_positive": ["TRUE" if v else "FALSE" for v in labels[n_gt:]],
        }
    ).write_csv(key)
    return wd, key


def copy_real(source: Workdir, root: Path) -> tuple[Workdir, Path]:
    settings = source.settings()
    if not settings.crowd.answer_key:
        raise SystemExit(f"{source.config}: crowd.answer_key is not set; the simulated crowd needs it")
    wd = init_workdir(root)
    shutil.copy(source.config, wd.config)
    for name in ("images", "shortlist", "pseudolabels"):
        if source.table(name).exists():
            shutil.copy(source.table(name), wd.table(name))
    return wd, Path(settings.crowd.answer_key)


def kinds_of(settings: Settings) -> dict[str, str]:
    c = settings.crowd
    return {
        w.id: w.kind
        for cohort in range(MAX_COHORTS)
        for w in make_population(
            c.workers,
            spammers=c.spammers,
            fast_clickers=c.fast_clickers,
            pages_per_worker=c.pages_per_worker,
            seed=c.seed,
            cohort=cohort,
        )
    }


def run_one(wd: Workdir, settings: Settings, truth: dict[int, int], *, label: str) -> dict[str, Any]:
    tic = time.perf_counter()
    campaign.launch(wd, settings, restart=True)
    collected = campaign.collect(wd, settings)
    seconds = time.perf_counter() - tic
    status = campaign.status(wd, settings)
    answers = collected.answers
    gold = campaign.read_gold(wd)
    banned = set(collected.bans["worker"])
    kind = kinds_of(settings)
    worked = set(answers["worker"])
    row: dict[str, Any] = {"campaign": label}
    for method in AGGREGATORS:
        out = aggregate(answers, method=method, gold=gold, banned=banned).tasks
        row[method] = float(np.mean([truth[t] == y for t, y in out.select("task", "label").rows()]))
    for k, name in (("spammer", "spammers"), ("fast", "fast"), ("good", "honest")):
        who = {w for w in worked if kind[w] == k}
        row[f"{name} banned"] = f"{len(who & banned)}/{len(who)}"
    row.update(
        pages=status.pages,
        answers=answers.height,
        cost=round(status.cost, 2),
        done=f"{status.tasks_done}/{status.tasks_total}",
        seconds=round(seconds, 1),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--gt", type=int, default=200)
    parser.add_argument("--spammers", type=float, default=0.2)
    parser.add_argument("--fast-clickers", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workdir", type=Path, default=None, help="Use this run's shortlist and answer key.")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            root = Path(tmp) / f"seed{seed}"
            if args.workdir:
                wd, key = copy_real(find_workdir(args.workdir), root)
            else:
                wd, key = synthesize(root, n_tasks=args.tasks, n_gt=args.gt, seed=seed)
            base = wd.settings()
            base = replace(
                base,
                crowd=replace(
                    base.crowd,
                    backend="simulated",
                    answer_key=str(key),
                    spammers=args.spammers,
                    fast_clickers=args.fast_clickers,
                    workers=args.workers,
                    seed=seed,
                ),
            )
            tasks = campaign.build_inputs(wd, base).tasks
            truth = match_truth(tasks, read_answer_key(key, task=base.task), where=str(key))
            no_qc = replace(
                base,
                crowd=replace(
                    base.crowd,
                    min_seconds_per_page=0.0,
                    min_honeypot_accuracy=0.0,
                    min_majority_agreement=0.0,
                ),
            )
            rows.append(run_one(wd, base, truth, label=f"seed {seed}, QC on"))
            rows.append(run_one(wd, no_qc, truth, label=f"seed {seed}, QC off"))
    source = args.workdir or f"synthetic {args.tasks} tasks, {args.gt} GT"
    echo_table(
        rows,
        title=f"simulated crowd on {source}: {args.workers} workers/cohort, {args.spammers:.0%} spammers, "
        f"{args.fast_clickers:.0%} fast clickers; accuracy vs the answer key",
    )
    for row in rows:
        verdict = "beats" if row["dawid-skene"] > row["majority-vote"] else "does NOT beat"
        print(
            f"{row['campaign']}: Dawid-Skene {row['dawid-skene']:.4f} {verdict} "
            f"majority vote {row['majority-vote']:.4f}"
        )


if __name__ == "__main__":
    main()
