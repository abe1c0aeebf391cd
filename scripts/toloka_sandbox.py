"""A two-page iris campaign on Toloka's sandbox: a smoke test for people with a sandbox token.

Not run in CI (it needs a token and the network). It drives the same TolokaBackend that
``iris crowd launch --backend toloka`` uses, with a campaign small enough to finish by hand:
2 training tasks, 2 exam tasks, 2 honeypots, pages of 4 images + 1 honeypot, overlap 1, and
8 images to label, so 2 pages in all.

Usage::

    export IRIS_CROWD_TOLOKA_TOKEN=...   # an OAuth token of a sandbox requester account
    python scripts/toloka_sandbox.py images.csv launch     # creates and opens everything
    # open https://sandbox.toloka.dev, and do the training, the exam and the two pages as a
    # trusted Toloker of your sandbox account
    python scripts/toloka_sandbox.py images.csv collect    # reads the answers and the bans
    python scripts/toloka_sandbox.py images.csv stop       # closes the pools
    python scripts/toloka_sandbox.py images.csv restart    # archives this run, launches anew

``images.csv`` has the columns ``source`` (an http(s) URL of an image) and ``label`` (1, 0,
or empty for an image to label): at least 6 labeled rows and 8 unlabeled ones. The state
(object ids, collected pages) is kept in ``--state`` (default ``toloka-sandbox/``), so each
step resumes the last one and a repeated ``launch`` creates nothing twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import polars as pl

from iris import tables
from iris.config import load_settings
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.spec import CampaignSpec, split_ground_truth

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import toloka.client as tk

    from iris.crowd.backends.toloka import TolokaBackend


def _inputs(path: Path, settings: object) -> CampaignInputs:
    rows = pl.read_csv(path, schema_overrides={"label": pl.Int8})
    if not {"source", "label"} <= set(rows.columns):
        sys.exit(f"{path}: needs the columns source and label; found {', '.join(rows.columns)}")
    n = rows.height
    images = pl.DataFrame(
        {
            "id": list(range(1, n + 1)),
            "source": rows["source"],
            "path": [f"sandbox/{i}" for i in range(1, n + 1)],
            "split": ["gt" if v is not None else "pool" for v in rows["label"]],
            "label": rows["label"],
            "width": 0,
            "height": 0,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]
    spec = CampaignSpec.from_settings(settings)  # type: ignore[arg-type]
    tasks = images.filter(pl.col("split") == "pool").head(8).select("id", "source", "path")
    if tasks.height < 8:
        sys.exit(f"{path}: {tasks.height} unlabeled images, the two pages need 8")
    tasks = tasks.with_columns(priority=pl.int_range(pl.len()).cast(pl.Int32))
    return CampaignInputs(
        spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=path.parent
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", type=Path, help="CSV with source,label (empty label: an image to label)")
    parser.add_argument("step", choices=["plan", "launch", "collect", "stop", "restart"])
    parser.add_argument("--state", type=Path, default=Path("toloka-sandbox"), help="state folder")
    parser.add_argument("--url", default="", help="API base URL instead of the sandbox's (tests)")
    args = parser.parse_args(argv)
    token = os.environ.get("IRIS_CROWD_TOLOKA_TOKEN", "")
    if not token and args.step != "plan":
        sys.exit("set IRIS_CROWD_TOLOKA_TOKEN to a sandbox requester's OAuth token")

    base = load_settings(None)
    settings = replace(
        base,
        crowd=replace(
            base.crowd,
            backend="toloka",
            training=2,
            exam=2,
            exam_pass=0.5,
            overlap=1,
            page_size=5,
            honeypots_per_page=1,
            price_per_page=0.01,
            exam_price=0.01,
            min_seconds_per_page=5.0,
            honeypot_window=2,
            skill_name="iris-sandbox",
            pages_per_worker=2,
        ),
    )
    inputs = _inputs(args.images, settings)
    client = None
    if token:
        where = {"url": args.url} if args.url else {"environment": "SANDBOX"}
        client = tk.TolokaClient(token, retries=2, timeout=30.0, **where)
    backend = TolokaBackend(settings=settings, state_dir=args.state, client=client)

    if args.step == "plan":
        plan = backend.plan(inputs)
        print(json.dumps(asdict(plan), indent=2))
        return
    if args.step == "restart":
        backend.retire(inputs)
        args.step = "launch"
    if args.step == "launch":
        status = backend.launch(inputs)
        state = json.loads((args.state / "state.json").read_text())
        print(json.dumps(asdict(status), indent=2, default=str))
        print(f"project https://sandbox.toloka.dev/requester/project/{state['project_id']}")
    elif args.step == "collect":
        collected = backend.collect(inputs)
        print(collected.answers)
        print(collected.bans if collected.bans.height else "no bans")
    else:
        print(json.dumps(asdict(backend.stop(inputs)), indent=2, default=str))


if __name__ == "__main__":
    main()
