"""How the simulated campaign's time grows with its size: tasks, pages, seconds, s/page.

    python benchmarks/bench_campaign.py                       # 5,000, 20,000 and 50,000 tasks
    python benchmarks/bench_campaign.py --tasks 2000 8000 --seed 1

Each size is a synthetic shortlist (seeded true labels, ``--gt`` labeled ground-truth
images split into training, exam and honeypots by the default ``[crowd]`` settings) run
once through the simulated crowd's public entry point, ``simulate``, with a purchase log in
a temporary folder, as ``iris crowd launch`` runs it. Time grows linearly with the pages
when the seconds per page stay flat as the campaign grows.

Only the public API is used (``CampaignInputs``, ``CampaignSpec``, ``split_ground_truth``,
``simulated.simulate`` / ``load_difficulty`` / ``PurchaseLog``), so the same script measures
an older checkout: ``PYTHONPATH=/path/to/old/checkout python benchmarks/bench_campaign.py``.
The ``answers`` column is a hash of the answers table: equal hashes for the same seed mean
the two codes ran the same campaign.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")

import numpy as np
import polars as pl

from iris.config import Settings
from iris.crowd.backends import simulated
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.spec import CampaignSpec, split_ground_truth


def synthesize(root: Path, *, n_tasks: int, n_gt: int, seed: int) -> tuple[CampaignInputs, dict[int, int]]:
    """Campaign inputs over ``n_tasks`` pool images and ``n_gt`` labeled ground-truth images."""
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
    settings = Settings()
    spec = CampaignSpec.from_settings(settings)
    tasks = (
        images.filter(pl.col("split") == "pool")
        .select("id", "source", "path")
        .with_columns(priority=pl.int_range(pl.len(), dtype=pl.Int32))
    )
    inputs = CampaignInputs(spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=root)
    return inputs, {int(i): int(v) for i, v in zip(ids, labels, strict=True)}


def run_one(n_tasks: int, *, n_gt: int, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        root = Path(tmp)
        inputs, truth = synthesize(root, n_tasks=n_tasks, n_gt=n_gt, seed=seed)
        c = Settings().crowd
        population: dict[str, float | int] = {
            "workers": c.workers,
            "spammers": c.spammers,
            "fast_clickers": c.fast_clickers,
            "pages_per_worker": c.pages_per_worker,
            "seed": seed,
        }
        ids = [*inputs.tasks["id"].to_list(), *inputs.ground_truth["id"].to_list()]
        difficulty = simulated.load_difficulty(inputs, ids, seed=seed)
        log = simulated.PurchaseLog(root / "crowd" / "simulated" / "pages.jsonl")
        start = time.perf_counter()
        result = simulated.simulate(
            inputs, truth=truth, difficulty=difficulty, population=population, log=log
        )
        seconds = time.perf_counter() - start
    digest = hashlib.sha256(result.answers.write_csv().encode()).hexdigest()[:12]
    return {
        "tasks": n_tasks,
        "pages": result.pages,
        "bans": result.bans.height,
        "seconds": round(seconds, 1),
        "s/page": round(seconds / max(result.pages, 1), 5),
        "complete": result.complete,
        "answers": digest,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--gt", type=int, default=200, help="labeled ground-truth images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import iris

    print(f"iris from {Path(iris.__file__).parent}", flush=True)
    columns = ["tasks", "pages", "bans", "seconds", "s/page", "complete", "answers"]
    print("| " + " | ".join(columns) + " |", flush=True)
    print("|" + "---|" * len(columns), flush=True)
    for n in args.tasks:
        row = run_one(n, n_gt=args.gt, seed=args.seed)
        print("| " + " | ".join(str(row[c]) for c in columns) + " |", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
