"""``iris demo``: the whole pipeline on the Fashion-MNIST benchmark with a simulated crowd.

The answer key is read only here, after the run, to score what iris produced; the
simulated crowd's virtual people also see it (they stand in for humans looking at the
images). iris's own labeling stages never read it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from iris.config import Settings, load_settings, render_toml
from iris.pipeline import RunState, run_pipeline
from iris.workdir import Workdir, find_workdir, init_workdir


def demo_settings(data_dir: Path, *, seed: int = 0, fast: bool = False) -> Settings:
    """Settings for the benchmark task (T-shirt/top vs Shirt) sized for 2 CPU cores."""
    base = Settings()
    return replace(
        base,
        task=replace(
            base.task,
            label_column="is_shirt",
            positive_name="shirt",
            negative_name="T-shirt/top",
        ),
        embed=replace(base.embed, backbone="efficientnet_lite0", finetune_epochs=2 if fast else 8, seed=seed),
        pseudolabel=replace(base.pseudolabel, seed=seed),
        crowd=replace(
            base.crowd,
            backend="simulated",
            answer_key=str((data_dir / "answer_key.csv").resolve()),
            seed=seed,
        ),
        # Fine-tuning at 64 px for 3 epochs fits 2 CPU cores in minutes; --fast trains only
        # a linear head on frozen features (about 0.01 lower test accuracy, well under a minute).
        train=replace(
            base.train,
            backbone="efficientnet_lite0",
            image_size=64,
            epochs=10 if fast else 3,
            freeze_backbone=fast,
            lr_factor=2.0 if fast else base.train.lr_factor,
            warmup_steps=100 if fast else base.train.warmup_steps,
            seed=seed,
        ),
    )


def prepare(root: Path, *, limit: int | None, n_labeled: int, seed: int, fast: bool) -> tuple[Workdir, Path]:
    """Build the benchmark files (once) and a work directory configured for them (once)."""
    from iris.data.fashion_mnist import build

    data_dir = root / "data"
    if not (data_dir / "answer_key.csv").exists():
        build(data_dir, n_labeled=n_labeled, seed=seed, limit=limit)
    work = root / "work"
    if (work / "iris.toml").exists():
        return find_workdir(work), data_dir
    workdir = init_workdir(work)
    workdir.config.write_text(render_toml(demo_settings(data_dir, seed=seed, fast=fast)), encoding="utf-8")
    return workdir, data_dir


def manifests(data_dir: Path) -> dict[str, Any]:
    return {
        "ground_truth": str(data_dir / "ground_truth.tsv"),
        "pool": [str(data_dir / "pool.tsv")],
        "test": str(data_dir / "test.xlsx"),
    }


def _agreement(a: pl.Series, b: pl.Series) -> float:
    matches = (a == b).cast(pl.Float64).to_numpy()
    return float(matches.mean()) if matches.size else 0.0


def score(workdir: Workdir, data_dir: Path, state: RunState) -> dict[str, Any]:
    """Compare what iris produced with the answer key: labels of the pool, test predictions."""
    from iris.data.fashion_mnist import read_answer_key
    from iris.tables import FINAL_LABELS, IMAGES, read

    key = read_answer_key(data_dir / "answer_key.csv").rename({"label": "truth"})
    images = read(workdir.table("images"), IMAGES)
    pool = images.filter(pl.col("split") == "pool").join(key.select("source", "truth"), on="source")
    result: dict[str, Any] = {"pool images": pool.height}
    crowd = state.data["stages"].get("crowd", {}).get("summary", {})
    if "rounds" in crowd:
        from iris.rounds.audit import STOP_REASONS

        # The crowd ran in rounds: what every round bought, and the audit's own estimate.
        result["sent to the crowd"] = f"{crowd['tasks']} ({crowd['share']:.1%} of the pool, audit included)"
        reason = STOP_REASONS.get(crowd["stop_reason"], "nothing to buy")
        result["crowd rounds"] = f"{crowd['rounds']} (stopped: {reason})"
        if crowd.get("audit_low") is not None:
            result["automatic labels correct (audit estimate, 95%)"] = (
                f"{crowd['audit_accuracy']:.3f} [{crowd['audit_low']:.3f}, {crowd['audit_high']:.3f}]"
            )
    elif workdir.table("shortlist").exists():
        shortlist = pl.read_parquet(workdir.table("shortlist"))
        result["sent to the crowd"] = (
            f"{shortlist.height} ({shortlist.height / max(pool.height, 1):.1%} of the pool)"
        )
    if "rounds" in crowd and workdir.table("round_labels").exists():
        auto = pl.read_parquet(workdir.table("round_labels"))
        joined = auto.join(pool.select("id", "truth"), on="id")
        if joined.height:
            acc = _agreement(joined["auto_label"], joined["truth"])
            result["automatic labels correct (answer key)"] = f"{acc:.3f} of {joined.height}"
    elif workdir.table("pseudolabels").exists():
        auto = pl.read_parquet(workdir.table("pseudolabels")).filter(pl.col("auto_label").is_not_null())
        joined = auto.join(pool.select("id", "truth"), on="id")
        if joined.height:
            acc = _agreement(joined["auto_label"], joined["truth"])
            result["automatic labels correct (answer key)"] = f"{acc:.3f} of {joined.height}"
    if workdir.table("final_labels").exists():
        final = read(workdir.table("final_labels"), FINAL_LABELS).join(pool.select("id", "truth"), on="id")
        for origin, part in final.group_by("origin", maintain_order=True):
            acc = _agreement(part["label"], part["truth"])
            result[f"final labels correct, {origin[0]}"] = f"{acc:.3f} of {part.height}"
        if final.height:
            result["final labels correct, all"] = f"{_agreement(final['label'], final['truth']):.3f}"
    predict = state.data["stages"].get("predict", {}).get("summary", {})
    submission = predict.get("submission") or predict.get("path")
    if submission and Path(submission).exists():
        from iris.train.submission import read_submission

        pred = read_submission(Path(submission), workdir).rename({"label": "pred"})
        test = key.filter(pl.col("split") == "test").join(pred, on="source")
        if test.height:
            result["test accuracy (answer key)"] = (
                f"{_agreement(test['pred'], test['truth']):.4f} on {test.height}"
            )
    if "cost" in crowd:
        result["crowd cost"] = crowd["cost"]
    for name, entry in state.data["stages"].items():
        result[f"time: {name}"] = f"{entry['seconds']:.1f} s"
    return result


def run_demo(
    root: Path, *, limit: int | None = None, n_labeled: int = 200, seed: int = 0, fast: bool = False
) -> tuple[Workdir, RunState, dict[str, Any]]:
    start = time.perf_counter()
    workdir, data_dir = prepare(root, limit=limit, n_labeled=n_labeled, seed=seed, fast=fast)
    settings = load_settings(workdir.root)
    state = run_pipeline(workdir, settings, manifests=manifests(data_dir))
    figures = score(workdir, data_dir, state)
    figures["total time"] = f"{time.perf_counter() - start:.0f} s"
    return workdir, state, figures
