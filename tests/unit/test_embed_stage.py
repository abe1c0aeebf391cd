from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from iris import tables
from iris.config import Settings
from iris.embed.stage import embed, payload_for, prepare_model
from iris.errors import DimensionError, InputError, StageOrderError
from iris.store import Filter, open_store
from iris.store.base import VectorStore
from iris.workdir import Workdir, init_workdir

torch.set_num_threads(1)  # 2 cores shared by several test runs: more threads only spin


def write_digits_workdir(workdir: Workdir, *, n: int = 40, labeled: int = 20, size: int = 32) -> pl.DataFrame:
    """n handwritten 0s and 1s as PNG files plus an images table: `labeled` gt rows, 5 test, rest pool."""
    digits = load_digits()
    index = np.concatenate([np.flatnonzero(digits.target == c)[: n // 2] for c in (0, 1)])
    rows = []
    for j, i in enumerate(index):
        path = f"images/d{j:03d}.png"
        image = Image.fromarray((digits.images[i] * 15.9).astype(np.uint8)).resize((size, size))
        image.convert("RGB").save(workdir.root / path)
        split = "gt" if j % 2 == 0 and j < 2 * labeled else ("test" if j % 8 == 1 else "pool")
        rows.append(
            {
                "id": 10_000 + j,
                "source": f"https://example.org/digits/{i}.png",
                "path": path,
                "split": split,
                "label": int(digits.target[i]) if split == "gt" else None,
                "width": size,
                "height": size,
                "sha256": f"{j:064x}",
            }
        )
    frame = tables.check(pl.DataFrame(rows), tables.IMAGES, where="test")
    tables.write(frame, workdir.table("images"))
    return frame


def small_settings(workdir: Workdir, **embed: Any) -> Settings:
    base: dict[str, Any] = {
        "backbone": "resnet18",
        "weights": "none",
        "image_size": 32,
        "finetune_epochs": 0,
        "batch_size": 8,
    }
    return workdir.settings(embed={**base, **embed})


def test_embeds_every_image_with_its_payload(workdir: Workdir) -> None:
    frame = write_digits_workdir(workdir)
    settings = small_settings(workdir, finetune_epochs=1)
    with open_store(workdir, settings) as store:
        report = embed(workdir, settings, store)
        assert report.embedded == report.total == 40 and report.already_embedded == 0
        assert report.dim == store.dimension() == 512
        assert report.heldout_accuracy is not None and report.heldout_size == 4
        assert report.parity_max_abs_diff < 1e-3 and report.parity_images == 16
        assert report.images_per_second > 0
        exported = store.export()
    assert exported.ids.tolist() == sorted(frame["id"].to_list())
    assert np.allclose(np.linalg.norm(exported.vectors, axis=1), 1.0, atol=1e-5)
    by_id = dict(zip(exported.ids.tolist(), exported.payloads, strict=True))
    for row in frame.to_dicts():
        payload = by_id[row["id"]]
        assert payload["split"] == row["split"] and payload["source"] == row["source"]
        assert payload["has_label"] == (row["label"] is not None)
        assert payload.get("label") == row["label"]
        assert payload["status"] == {"gt": "gt", "test": "test", "pool": "unlabeled"}[row["split"]]
    meta = json.loads((workdir.models / "embedder.json").read_text())
    assert meta["config"]["backbone"] == "resnet18" and meta["dim"] == 512
    assert meta["finetune"]["epochs"] == 1 and len(meta["finetune"]["history"]) == 1
    # the held-out fold is marked so that accuracy estimates can leave trained-on labels out
    marks = [p.get("finetune") for p in exported.payloads if p["has_label"]]
    assert marks.count("heldout") == report.heldout_size
    assert marks.count("train") == len(meta["finetune"]["trained_ids"]) == len(marks) - report.heldout_size
    assert (workdir.models / "embedder.pt").is_file() and (workdir.models / "embedder.onnx").is_file()


@pytest.fixture(scope="module")
def frozen_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ of a digits work dir with the frozen resnet18 (weights none, seed 0) exported once."""
    workdir = init_workdir(tmp_path_factory.mktemp("frozen") / "work")
    frame = write_digits_workdir(workdir)
    _meta, reused = prepare_model(workdir, small_settings(workdir), frame)
    assert not reused
    return workdir.models


def with_frozen_model(workdir: Workdir, models: Path) -> None:
    """Give ``workdir`` the digits images and the already exported frozen model."""
    write_digits_workdir(workdir)
    shutil.copytree(models, workdir.models, dirs_exist_ok=True)


class Interrupted(Exception):
    pass


def interrupt_after(store: VectorStore, batches: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``store.upsert`` fail on call number ``batches + 1``, as a killed run would stop."""
    real = store.upsert
    calls = {"n": 0}

    def upsert(*args: Any, **kwargs: Any) -> None:
        if calls["n"] == batches:
            raise Interrupted
        calls["n"] += 1
        real(*args, **kwargs)

    monkeypatch.setattr(store, "upsert", upsert)


def test_interrupted_run_resumes_with_only_the_rest(
    workdir: Workdir, frozen_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_frozen_model(workdir, frozen_models)
    settings = small_settings(workdir)
    with open_store(workdir, settings) as store:
        interrupt_after(store, 2, monkeypatch)
        with pytest.raises(Interrupted):
            embed(workdir, settings, store)
        assert store.count() == 16  # two batches of 8
        first = store.retrieve([10_000], with_vectors=True)[0][2]
    monkeypatch.undo()
    with open_store(workdir, settings) as store:
        report = embed(workdir, settings, store)
        assert report.model_reused and report.already_embedded == 16 and report.embedded == 24
        assert store.count() == 40
        assert np.allclose(store.retrieve([10_000], with_vectors=True)[0][2], first)
        again = embed(workdir, settings, store)
        assert again.embedded == 0 and again.already_embedded == 40


def test_changed_settings_rebuild_the_model_and_reembed(workdir: Workdir, frozen_models: Path) -> None:
    with_frozen_model(workdir, frozen_models)
    with open_store(workdir, small_settings(workdir)) as store:
        first = embed(workdir, small_settings(workdir), store)
        assert first.model_reused and first.embedded == 40
        second = embed(workdir, small_settings(workdir, seed=1), store)
        assert not second.model_reused and second.fingerprint != first.fingerprint
        assert second.embedded == 40 and second.already_embedded == 0
        assert store.count(Filter(must={"embedder": second.fingerprint})) == 40


def test_dimension_mismatch_is_reported_before_any_work(workdir: Workdir) -> None:
    write_digits_workdir(workdir, n=8, labeled=2)
    settings = small_settings(workdir, finetune_epochs=1)
    with open_store(workdir, settings) as store:
        store.ensure_collection(dim=64, distance="cosine")
        with pytest.raises(DimensionError):
            embed(workdir, settings, store)
    assert not (workdir.models / "embedder.onnx").exists()


def test_weights_none_is_reproducible_from_the_seed(workdir: Workdir, frozen_models: Path) -> None:
    write_digits_workdir(workdir)
    meta, reused = prepare_model(workdir, small_settings(workdir), tables.read(workdir.table("images")))
    assert not reused
    assert meta["fingerprint"] == json.loads((frozen_models / "embedder.json").read_text())["fingerprint"]


def test_missing_or_empty_images_table(workdir: Workdir) -> None:
    settings = small_settings(workdir)
    with open_store(workdir, settings) as store:
        with pytest.raises(StageOrderError, match="iris ingest"):
            embed(workdir, settings, store)
        tables.write(tables.empty(tables.IMAGES), workdir.table("images"))
        with pytest.raises(InputError, match="no images to embed"):
            embed(workdir, settings, store)


def test_payload_statuses() -> None:
    row = {"id": 7, "split": "pool", "source": "s", "label": None}
    assert payload_for(row, "f") == {
        "split": "pool",
        "source": "s",
        "has_label": False,
        "status": "unlabeled",
        "embedder": "f",
    }
    assert payload_for({**row, "split": "gt", "label": 1}, "f")["status"] == "gt"
    assert payload_for({**row, "split": "gt", "label": 1}, "f", frozenset({7}))["finetune"] == "train"
    assert payload_for({**row, "split": "gt", "label": 1}, "f")["finetune"] == "heldout"
    assert payload_for({**row, "split": "test"}, "f")["status"] == "test"


# A child process that embeds and SIGKILLs itself once `k` batches are in the store: it
# asks for batch k+1 only after batch k was upserted (and journaled).
_KILLED_CHILD = """
import json, os, signal, sys
from pathlib import Path
from iris.embed import stage
from iris.store import open_store
from iris.workdir import find_workdir

root, k, embed_settings = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
workdir = find_workdir(root)
settings = workdir.settings(embed=embed_settings)
real = stage._vector_batches

def killed_after(*args, **kwargs):
    for n, item in enumerate(real(*args, **kwargs)):
        if n == k:
            os.kill(os.getpid(), signal.SIGKILL)
        yield item

stage._vector_batches = killed_after
with open_store(workdir, settings) as store:
    stage.embed(workdir, settings, store)
"""


def test_a_kill_after_batch_k_keeps_every_finished_batch_and_embeds_none_twice(
    tmp_path: Path, frozen_models: Path
) -> None:
    """Issue 11: a kill at 22% of embedding kept only 64 of about 384 finished vectors (the
    embedded store flushes every few seconds). Now the k finished batches are all kept."""
    import os
    import signal
    import subprocess
    import sys

    k, batch = 3, 8
    killed = init_workdir(tmp_path / "killed")
    with_frozen_model(killed, frozen_models)
    overrides = {"backbone": "resnet18", "weights": "none", "image_size": 32, "finetune_epochs": 0,
                 "batch_size": batch}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "IRIS_PROGRESS": "0"}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(killed.root), str(k), json.dumps(overrides)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]

    settings = small_settings(killed)
    with open_store(killed, settings) as store:
        in_store = store.count()  # what the store itself had flushed before the kill
        report = embed(killed, settings, store)
        assert report.model_reused
        assert report.already_embedded == k * batch  # every finished batch was kept
        assert report.recovered == k * batch - in_store  # the rest came from the journal
        assert report.embedded == 40 - k * batch  # and none was embedded again
        assert store.count() == 40
        resumed = store.export()

    straight = init_workdir(tmp_path / "straight")
    with_frozen_model(straight, frozen_models)
    with open_store(straight, settings) as store:
        assert embed(straight, settings, store).embedded == 40
        expected = store.export()
    assert resumed.ids.tolist() == expected.ids.tolist()
    assert np.allclose(resumed.vectors, expected.vectors, atol=1e-6)
    assert resumed.payloads == expected.payloads
