"""iris's local quality-control rules against Toloka's, on a simulated demo-sized campaign.

    python benchmarks/bench_toloka_rules.py                 # 5,130 tasks, 200 GT, seed 0
    python benchmarks/bench_toloka_rules.py --tasks 800 --gt 60 --seeds 0 1 2

The simulated crowd runs the campaign (``iris.crowd.backends.simulated.simulate``, default
population: 20% spammers, 10% fast clickers). On its answers, the bans of iris's own rules
(:func:`iris.crowd.quality.evaluate`, what the report showed before issue 14) and of Toloka's
rules as :mod:`iris.crowd.platform` models them are counted per rule, with the workers only one
of them bans, and the time each takes. Also printed: the pages one worker can get before the
honeypots run out, and the most any simulated worker did.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

os.environ.setdefault("IRIS_PROGRESS", "0")

import numpy as np
import polars as pl

from iris import tables
from iris.cli._common import echo_table
from iris.config import load_settings
from iris.crowd import platform, quality
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.backends.simulated import simulate
from iris.crowd.spec import CampaignSpec, split_ground_truth


def inputs_for(n_tasks: int, n_gt: int, seed: int) -> tuple[CampaignInputs, dict[int, int], dict[int, float]]:
    rng = np.random.default_rng(seed)
    ids = list(range(1, n_gt + n_tasks + 1))
    labels = rng.integers(0, 2, len(ids)).tolist()
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"https://img.example/{i}.png" for i in ids],
            "path": [f"images/{i}.png" for i in ids],
            "split": ["gt"] * n_gt + ["pool"] * n_tasks,
            "label": labels[:n_gt] + [None] * n_tasks,
            "width": 8,
            "height": 8,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]
    spec = CampaignSpec.from_settings(load_settings(None, environ={}))
    tasks = images.filter(pl.col("split") == "pool").select("id", "source", "path")
    tasks = tasks.with_columns(priority=pl.int_range(pl.len()).cast(pl.Int32))
    inputs = CampaignInputs(spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=None)  # type: ignore[arg-type]
    truth = dict(zip(ids, labels, strict=True))
    difficulty = dict(zip(ids, (0.6 * rng.beta(2.0, 5.0, len(ids))).tolist(), strict=True))
    return inputs, truth, difficulty


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=5130)
    parser.add_argument("--gt", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    c = load_settings(None, environ={}).crowd
    rows = []
    for seed in args.seeds:
        inputs, truth, difficulty = inputs_for(args.tasks, args.gt, seed)
        population = {
            "workers": c.workers,
            "spammers": c.spammers,
            "fast_clickers": c.fast_clickers,
            "pages_per_worker": c.pages_per_worker,
            "seed": seed,
        }
        t0 = time.perf_counter()
        result = simulate(inputs, truth=truth, difficulty=difficulty, population=population)
        t_sim = time.perf_counter() - t0
        answers = result.answers
        end = answers["submitted_at"].max() + timedelta(seconds=1)  # type: ignore[operator]
        t0 = time.perf_counter()
        local = quality.evaluate(answers, inputs.gold, inputs.spec.rules, now=end)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        toloka = platform.evaluate(
            answers, inputs.gold, platform.TolokaRules.of(inputs.spec.rules, overlap=inputs.spec.overlap)
        )
        t_toloka = time.perf_counter() - t0
        per_worker = answers.group_by("worker").agg(pl.col("page").n_unique())["page"]
        for name, bans, seconds in (("iris rules", local, t_local), ("Toloka rules", toloka, t_toloka)):
            other = toloka if bans is local else local
            by_rule = dict(bans.group_by("rule").len().iter_rows())
            rows.append(
                {
                    "seed": seed,
                    "rules": name,
                    "answers": answers.height,
                    "fast": by_rule.get("fast", 0),
                    "honeypot": by_rule.get("honeypot", 0),
                    "majority": by_rule.get("majority", 0),
                    "only these ban": len(set(bans["worker"]) - set(other["worker"])),
                    "eval s": round(seconds, 3),
                    "pages/worker cap": platform.max_pages_per_worker(
                        inputs.role("honeypot").height, inputs.spec.honeypots_per_page
                    ),
                    "max pages done": int(per_worker.max() or 0),  # type: ignore[arg-type]
                    "simulate s": round(t_sim, 1),
                }
            )
    echo_table(rows, title=f"quality control on {args.tasks} tasks, {args.gt} GT")


if __name__ == "__main__":
    main()
