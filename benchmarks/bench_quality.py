"""Who quality control bans, per kind of simulated worker, on a shortlist of hard images.

    python benchmarks/bench_quality.py                          # seeds 0-4, default settings
    python benchmarks/bench_quality.py --seeds 0 1 --difficulty 0.3 0.9 --rules iris
    python benchmarks/bench_quality.py --set min_skill=0 --set min_majority_agreement=0.6  # before

The simulated crowd (default population: 60 people a cohort, 20% spammers, 10% fast clickers,
the rest honest with accuracy 0.5 + 0.5·Beta(5, 1)) labels a synthetic shortlist of
``--tasks`` images whose difficulty is drawn uniformly in ``--difficulty`` (ground-truth
images: Beta(2, 5), as the simulated crowd draws them). The kinds are known, so the table
says which share of each kind was banned, as mean ± spread (min–max) over the seeds, and the
pages bought (every wrongful ban is paid for again in re-issued pages). ``--set key=value``
overrides a ``[crowd]`` setting, to compare rule sets.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")

import numpy as np
import polars as pl

from iris.cli._common import echo_table
from iris.config import load_settings
from iris.crowd import aggregation, quality
from iris.crowd.backends import simulated
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.spec import CampaignSpec, split_ground_truth

KINDS = ("good", "spammer", "fast")


def synthesize(
    *, n_tasks: int, n_gt: int, seed: int, spec: CampaignSpec, hard: tuple[float, float]
) -> tuple[CampaignInputs, dict[int, int], dict[int, float]]:
    rng = np.random.default_rng([seed, 77])
    n = n_gt + n_tasks
    ids = np.arange(1, n + 1)
    labels = rng.integers(0, 2, n)
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"https://bench.example/{i}.png" for i in ids],
            "path": [f"images/{i}.png" for i in ids],
            "split": ["gt"] * n_gt + ["pool"] * n_tasks,
            "label": [int(v) for v in labels[:n_gt]] + [None] * n_tasks,
        },
        schema={"id": pl.Int64, "source": pl.String, "path": pl.String, "split": pl.String, "label": pl.Int8},
    )
    tasks = (
        images.filter(pl.col("split") == "pool")
        .select("id", "source", "path")
        .with_columns(priority=pl.int_range(pl.len(), dtype=pl.Int32))
    )
    inputs = CampaignInputs(
        spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=Path(".")
    )
    difficulty = dict(zip(ids[:n_gt].tolist(), rng.beta(2.0, 5.0, n_gt).tolist(), strict=True))
    difficulty |= dict(zip(ids[n_gt:].tolist(), rng.uniform(*hard, n_tasks).tolist(), strict=True))
    return inputs, {int(i): int(v) for i, v in zip(ids, labels, strict=True)}, difficulty


def run_one(args: argparse.Namespace, seed: int, overrides: dict[str, str]) -> dict[str, object]:
    settings = load_settings(None, environ={f"IRIS_CROWD_{k.upper()}": v for k, v in overrides.items()})
    c = settings.crowd
    spec = replace(CampaignSpec.from_settings(settings), seed=seed)
    inputs, truth, difficulty = synthesize(
        n_tasks=args.tasks, n_gt=args.gt, seed=seed, spec=spec, hard=tuple(args.difficulty)
    )
    population: dict[str, float | int] = {
        "workers": c.workers,
        "spammers": c.spammers,
        "fast_clickers": c.fast_clickers,
        "pages_per_worker": c.pages_per_worker,
        "seed": seed,
    }
    t0 = time.perf_counter()
    result = simulated.simulate(
        inputs, truth=truth, difficulty=difficulty, population=population, rules=args.rules
    )
    seconds = time.perf_counter() - t0
    rule_of = dict(zip(result.bans["worker"].to_list(), result.bans["rule"].to_list(), strict=True))
    out: dict[str, object] = {"pages": result.pages, "needed": spec.pages_for(args.tasks), "s": seconds}
    by_rule: dict[str, int] = defaultdict(int)
    pages = dict(result.answers.group_by("worker").agg(pl.col("page").n_unique()).iter_rows())
    for kind in KINDS:
        # Who submitted a page (people who passed the exam after the work ran out never answer).
        people = [w for w in result.workers if w.kind == kind and pages.get(w.id, 0) > 0]
        banned = [w for w in people if w.id in rule_of]
        out[kind] = (len(people), len(banned))
        for w in banned:
            by_rule[f"{kind}:{rule_of[w.id]}"] += 1
    out["by_rule"] = dict(by_rule)
    out["escaped_pages"] = [
        pages[w.id] for w in result.workers if w.kind != "good" and w.id not in rule_of and w.id in pages
    ]
    out["banned_pages"] = [pages[w.id] for w in result.workers if w.kind != "good" and w.id in rule_of]
    if args.crowdkit:
        # iris's skill against crowd-kit's Dawid-Skene on the same answers (rank correlation).
        ours = quality.worker_skills(result.answers, inputs.gold)
        theirs = aggregation.aggregate(result.answers, method="dawid-skene", gold=inputs.gold).workers
        both = ours.join(theirs.select("worker", ds="skill"), on="worker").drop_nulls()
        out["spearman"] = float(np.corrcoef(both["skill"].rank(), both["ds"].rank())[0, 1])
    good = {w.id: w.accuracy for w in result.workers if w.kind == "good"}
    out["good_banned_accuracy"] = sorted(round(good[w], 2) for w in rule_of if w in good)
    return out


def spread(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f} ± {a.std():.3f} ({a.min():.3f}–{a.max():.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--gt", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--difficulty", type=float, nargs=2, default=[0.3, 0.9], metavar=("LOW", "HIGH"))
    parser.add_argument("--rules", choices=["toloka", "iris"], default="toloka")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [crowd] setting")
    parser.add_argument("--verbose", action="store_true", help="one line per seed too")
    parser.add_argument(
        "--no-crowdkit",
        dest="crowdkit",
        action="store_false",
        help="skip comparing the skills with crowd-kit's Dawid-Skene",
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    runs = [run_one(args, seed, overrides) for seed in args.seeds]
    if args.verbose:
        for seed, r in zip(args.seeds, runs, strict=True):
            print(seed, r)
    rows = []
    for kind in KINDS:
        counts = [r[kind] for r in runs]  # type: ignore[misc]
        rows.append(
            {
                "kind": kind,
                "workers who did a page (all seeds)": sum(n for n, _ in counts),
                "banned": sum(b for _, b in counts),
                "share banned, mean ± sd (min–max) over seeds": spread(
                    [b / n if n else 0.0 for n, b in counts]
                ),
            }
        )
    label = (
        f"{args.rules} rules, {args.tasks} tasks, difficulty U{tuple(args.difficulty)}, seeds {args.seeds}"
    )
    echo_table(rows, title=label + (f", {overrides}" if overrides else ""))
    pages = [float(r["pages"]) for r in runs]  # type: ignore[arg-type]
    print(
        f"pages bought: {spread(pages)} (a full overlap needs {runs[0]['needed']}); "
        f"simulate s: {spread([float(r['s']) for r in runs])}"
    )  # type: ignore[arg-type]
    if args.crowdkit:
        print(
            "rank correlation of iris's skill with crowd-kit DawidSkene's (all answers, end of campaign): "
            + spread([float(r["spearman"]) for r in runs])  # type: ignore[arg-type]
        )
    escaped = sorted(n for r in runs for n in r["escaped_pages"])  # type: ignore[attr-defined]
    caught = [n for r in runs for n in r["banned_pages"]]  # type: ignore[attr-defined]
    print(
        f"pages a spammer or fast clicker did: banned ones {np.mean(caught):.2f} on average "
        f"(the page that earned the ban included); those never banned: {escaped}"
    )
    totals: dict[str, int] = defaultdict(int)
    for r in runs:
        for key, n in r["by_rule"].items():  # type: ignore[attr-defined]
            totals[key] += n
    print("bans by kind:rule:", dict(sorted(totals.items())))


if __name__ == "__main__":
    main()
