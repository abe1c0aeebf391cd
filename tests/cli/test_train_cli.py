"""``iris propagate``, ``iris train`` and ``iris predict`` through the command line, chained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch
from click.testing import CliRunner
from PIL import Image

from iris import tables
from iris.cli import main
from iris.store import open_store
from iris.tables import FINAL_LABELS, IMAGES

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from test_train_fixtures import make_digits_workdir, write_ingest_record

torch.set_num_threads(2)

TINY = [
    "--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--epochs", "3",
    "--batch-size", "8", "--warmup-steps", "5", "--lr-factor", "0.5", "--freeze-backbone",
]  # fmt: skip


def store_pixels(workdir) -> None:
    """Vectors for the store: each image's normalised pixels (the embed stage's stand-in here)."""
    images = tables.read(workdir.table("images"), IMAGES)
    vectors = np.stack(
        [
            np.asarray(Image.open(workdir.root / p).convert("L").resize((8, 8)), np.float32).ravel()
            for p in images["path"]
        ]
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payloads = [
        {
            "split": s,
            "source": src,
            "status": {"gt": "gt", "test": "test"}.get(s, "unlabeled"),
            "has_label": s == "gt",
        }
        | ({"label": int(lab)} if lab is not None else {})
        for s, src, lab in images.select("split", "source", "label").iter_rows()
    ]
    store = open_store(workdir, workdir.settings())
    store.ensure_collection(dim=64)
    store.upsert(images["id"].to_numpy(), vectors, payloads)
    store.close()


def test_propagate_train_predict_chain(workdir, tmp_path) -> None:
    truth = make_digits_workdir(workdir, n_labeled=30, n_pool=20, n_test=10)
    tables.write(pl.DataFrame(schema=FINAL_LABELS), workdir.table("final_labels"))  # stale, replaced below
    store_pixels(workdir)
    runner = CliRunner()
    w = ["--workdir", str(workdir.root)]

    result = runner.invoke(main, [*w, "propagate", "--ks", "3,5", "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "final labels: gt 30, crowd 0, auto 0; conflicts: none" in result.output
    assert "propagated 20 images" in result.output
    final = tables.read(workdir.table("final_labels"), FINAL_LABELS)
    assert final.group_by("origin").len().sort("origin").rows() == [("gt", 30), ("propagated", 20)]

    result = runner.invoke(main, [*w, "train", *TINY])
    assert result.exit_code == 0, result.output
    assert "epoch 3/3" in result.output and "validation accuracy" in result.output
    assert (workdir.reports / "training.png").exists()
    again = runner.invoke(main, [*w, "train", *TINY, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["resumed_from_epoch"] == 3  # finished: nothing retrained

    write_ingest_record(workdir, list(truth))
    out = tmp_path / "submission.csv"
    result = runner.invoke(main, [*w, "predict", "--out", str(out), "--probabilities"])
    assert result.exit_code == 0, result.output
    assert f"10 rows -> {out}" in result.output
    header, *rows = out.read_text().splitlines()
    assert header == "downloadUrl,is_conifer,probability"
    assert [row.split(",")[0] for row in rows] == list(truth)


def test_errors_are_one_line(workdir) -> None:
    runner = CliRunner()
    w = ["--workdir", str(workdir.root)]
    result = runner.invoke(main, [*w, "train", "--schedule", "linear"])
    assert result.exit_code == 2 and "'linear' is not one of" in result.output
    result = runner.invoke(main, [*w, "train"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"iris: error: {workdir.table('final_labels')} does not exist yet; run `iris propagate` first"
    )
    result = runner.invoke(main, [*w, "predict"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "run `iris ingest` first" in result.output


def test_sigkill_during_training_then_resume(workdir) -> None:
    import os
    import signal
    import subprocess
    import time

    make_digits_workdir(workdir, n_labeled=24, n_test=0)
    args = ["--workdir", str(workdir.root), "train", *TINY, "--finetune-backbone", "--image-size", "16"]
    args[args.index("--epochs") + 1] = "3"
    last = workdir.models / "classifier" / "last.pt"
    env = {**os.environ, "IRIS_PROGRESS": "0", "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "iris", *args], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # right after the first checkpoint landed
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"

    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert 1 <= report["resumed_from_epoch"] < 3
    assert report["epochs"] == 3
    assert [row["epoch"] for row in report["history"]] == [1, 2, 3]
