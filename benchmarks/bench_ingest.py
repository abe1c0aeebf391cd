"""Ingest speed on the Fashion-MNIST benchmark (14,000 local PNGs), printed as a table.

    python benchmarks/bench_ingest.py [--out DIR] [--limit N] [--workers N ...]

Builds the benchmark files once, then for each worker count ingests them into a fresh
work directory (cold) and again (re-run, nothing to fetch), through the library entry
point ``iris.data.ingest.ingest`` that ``iris ingest`` calls.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")

from iris.data.fashion_mnist import build
from iris.data.ingest import ingest
from iris.workdir import init_workdir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to build the files (default: a temp dir)"
    )
    parser.add_argument("--limit", type=int, default=None, help="train images to keep (default: all 12,000)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0], help="0 = a thread per core, N = N processes"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="iris-bench-ingest-"))
    out = args.out or scratch / "fm"
    started = time.perf_counter()
    files = build(out, limit=args.limit)
    rows = [("build fashion-mnist", "-", sum(files.counts.values()), time.perf_counter() - started, "")]
    try:
        for workers in args.workers:
            workdir = init_workdir(scratch / f"work-{workers}")
            settings = workdir.settings(
                task={"label_column": files.label_column}, ingest={"workers": workers}
            )
            for run in ("cold", "re-run"):
                report = ingest(
                    workdir, settings, ground_truth=files.ground_truth, pool=[files.pool], test=files.test
                )
                counts = "/".join(str(report.counts[s]) for s in ("gt", "pool", "test"))
                rejects = sum(report.rejects.values())
                rows.append(
                    (
                        f"ingest {run}",
                        str(workers),
                        report.processed + report.reused,
                        report.seconds,
                        f"gt/pool/test {counts}, rejects {rejects}",
                    )
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"{'step':<20} {'workers':>7} {'images':>7} {'seconds':>8} {'img/s':>8}  result")
    for step, workers, images, seconds, note in rows:
        print(f"{step:<20} {workers:>7} {images:>7} {seconds:>8.1f} {images / seconds:>8.0f}  {note}")
    print(f"(cpu cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
