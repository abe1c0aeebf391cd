"""The whole pipeline on small real data (Fashion-MNIST), run as the user runs it:
``python -m iris run`` in a subprocess, killed with SIGKILL during embedding, during the
second crowd round (drawn, partly bought, not yet recorded) and during training, and re-run
each time. The interrupted run must end
with the same labels and crowd answers as an uninterrupted one, buy no page twice and
redo no finished stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from simulated_pages import pages_bought

from iris.config import Settings, render_toml
from iris.data.fashion_mnist import build
from iris.demo import manifests
from iris.workdir import Workdir, init_workdir

pytestmark = pytest.mark.slow

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _settings(data: Path) -> Settings:
    base = Settings()
    return replace(
        base,
        task=replace(base.task, label_column="is_shirt", positive_name="shirt", negative_name="T-shirt/top"),
        embed=replace(base.embed, backbone="efficientnet_lite0", image_size=32, finetune_epochs=1),
        pseudolabel=replace(base.pseudolabel, estimate_folds=0),
        select=replace(base.select, map_points=0),
        crowd=replace(
            base.crowd,
            training=10,
            exam=10,
            answer_key=str(data / "answer_key.csv"),
            pace_s=0.15,  # the campaign takes a few seconds of wall time, so it can be killed
        ),
        # At least two rounds (the target is out of reach), so a kill can land inside the second.
        rounds=replace(base.rounds, target=0.999, max_rounds=3),
        train=replace(
            base.train,
            backbone="efficientnet_lite0",
            image_size=32,
            epochs=4,
            patience=10,
            warmup_steps=10,
        ),
    )


def _workdir(root: Path, data: Path) -> Workdir:
    workdir = init_workdir(root)
    workdir.config.write_text(render_toml(_settings(data)), encoding="utf-8")
    return workdir


def _command(workdir: Workdir, data: Path) -> list[str]:
    m = manifests(data)
    return [
        sys.executable, "-m", "iris", "--workdir", str(workdir.root), "run",
        "--ground-truth", m["ground_truth"], "--pool", m["pool"][0], "--test", m["test"],
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "IRIS_PROGRESS": "0", "OMP_NUM_THREADS": "2"}


def _run(workdir: Workdir, data: Path) -> str:
    done = subprocess.run(_command(workdir, data), env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _kill_when(workdir: Workdir, data: Path, ready: Callable[[], bool], what: str) -> None:
    """Start ``iris run`` and SIGKILL it as soon as ``ready()`` holds."""
    log = workdir.root / f"killed-{what.replace(' ', '-')}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(_command(workdir, data), env=_env(), stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not ready():
        if proc.poll() is not None:
            tail = log.read_text()[-2000:]
            pytest.fail(f"iris run ended ({proc.returncode}) before it could be killed {what}: {tail}")
        assert time.monotonic() < deadline, f"never reached the point to kill {what}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _state(workdir: Workdir) -> dict:
    path = workdir.root / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"stages": {}}


def _rounds_recorded(workdir: Workdir) -> int:
    path = workdir.table("rounds")
    return pl.read_parquet(path).height if path.exists() else 0


def _inside_round_two(workdir: Workdir) -> Callable[[], bool]:
    """True once round 2 is drawn, not yet recorded, and a page of it has been bought."""
    seen: dict[str, int] = {}

    def ready() -> bool:
        if _rounds_recorded(workdir) != 1:
            return False
        pages = len(pages_bought(workdir))
        seen.setdefault("at_round_one", pages)
        return pages > seen["at_round_one"]

    return ready


def _labels(workdir: Workdir) -> pl.DataFrame:
    return pl.read_parquet(workdir.table("final_labels")).select("id", "label", "origin").sort("id")


def _answers(workdir: Workdir) -> pl.DataFrame:
    return (
        pl.read_parquet(workdir.table("answers"))
        .select("task", "worker", "label", "page")
        .sort("page", "task")
    )


@pytest.mark.skipif(not FASHION.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_sigkill_during_embed_crowd_and_train_resumes_to_the_same_labels(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, n_labeled=60, limit=480, seed=0)

    straight = _workdir(tmp_path / "straight", data)
    out = _run(straight, data)
    assert "[predict] finished" in out
    assert set(_state(straight)["stages"]) == {
        "ingest", "embed", "pseudolabel", "select", "crowd", "aggregate", "propagate", "train", "predict",
    }  # fmt: skip

    resumed = _workdir(tmp_path / "resumed", data)
    onnx = resumed.models / "embedder.onnx"
    _kill_when(resumed, data, onnx.exists, "during embedding")
    assert "embed" not in _state(resumed)["stages"]

    assert _rounds_recorded(straight) >= 2
    _kill_when(resumed, data, _inside_round_two(resumed), "inside the second crowd round")
    assert {"ingest", "embed", "pseudolabel", "select"} <= set(_state(resumed)["stages"])
    assert "crowd" not in _state(resumed)["stages"]
    assert _rounds_recorded(resumed) == 1  # killed after round 2 was drawn and partly bought
    drawn = pl.read_parquet(resumed.table("round_tasks"))
    assert drawn["round"].max() == 1
    bought_before = pages_bought(resumed)
    embedder_mtime = onnx.stat().st_mtime_ns

    last = resumed.models / "classifier" / "last.pt"
    _kill_when(resumed, data, last.exists, "during training")
    assert "train" not in _state(resumed)["stages"]
    assert onnx.stat().st_mtime_ns == embedder_mtime  # the embedder was not rebuilt

    out = _run(resumed, data)
    for stage in ("ingest", "embed", "pseudolabel", "select", "crowd", "aggregate", "propagate"):
        assert f"[{stage}] done already, skipped" in out
    assert "resuming after epoch" in out
    assert "[predict] finished" in out

    bought = pages_bought(resumed)
    assert len(bought) == len(set(bought)), "a crowd page was bought twice"
    assert bought[: len(bought_before)] == bought_before
    assert sorted(bought) == sorted(pages_bought(straight))
    assert _answers(resumed).equals(_answers(straight))
    for name in ("round_tasks", "rounds", "round_labels"):
        assert pl.read_parquet(resumed.table(name)).equals(pl.read_parquet(straight.table(name))), name
    assert _labels(resumed).equals(_labels(straight))
    submission = resumed.root / "submission.csv"
    assert pl.read_csv(submission).columns[:2] == ["downloadUrl", "is_shirt"]
