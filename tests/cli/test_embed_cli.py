from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

from iris import tables
from iris.cli import main
from iris.embed import backbones
from iris.workdir import Workdir, init_workdir

torch.set_num_threads(1)  # 2 cores shared by several test runs: more threads only spin
SMALL = ["--weights", "none", "--image-size", "32", "--batch-size", "8"]


@pytest.fixture
def tiny(tmp_path: Path) -> Workdir:
    """40 handwritten 0s and 1s (20 labeled ground truth, 5 test, 15 pool) in a work directory."""
    workdir = init_workdir(tmp_path / "work")
    digits = load_digits()
    index = np.concatenate([np.flatnonzero(digits.target == c)[:20] for c in (0, 1)])
    rows = []
    for j, i in enumerate(index):
        path = f"images/{j}.png"
        Image.fromarray((digits.images[i] * 15.9).astype(np.uint8)).resize((32, 32)).convert("RGB").save(
            workdir.root / path
        )
        split = "gt" if j % 2 == 0 else ("test" if j % 8 == 1 else "pool")
        label = int(digits.target[i]) if split == "gt" else None
        rows.append({"id": j + 1, "source": f"{i}.png", "path": path, "split": split, "label": label,
                     "width": 32, "height": 32, "sha256": str(j)})  # fmt: skip
    tables.write(tables.check(pl.DataFrame(rows), tables.IMAGES, where="test"), workdir.table("images"))
    return workdir


def run(workdir: Workdir, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--workdir", str(workdir.root), "embed", *args])
    return result.exit_code, result.output


def test_embed_reports_accuracy_parity_and_speed_then_resumes(tiny: Workdir) -> None:
    code, out = run(tiny, "--backbone", "resnet18", "--finetune-epochs", "1", *SMALL)
    assert code == 0, out
    assert "resnet18 at 32px, 512-d, built" in out
    assert "fine-tune: 1 epochs on 16 images, held-out accuracy" in out
    assert "parity torch vs ONNX Runtime: max abs diff" in out
    assert "embedded 40 images (0 already in the store, 40 in all) at" in out and "images/s on CPU" in out

    code, out = run(tiny, "--backbone", "resnet18", "--finetune-epochs", "1", *SMALL)
    assert code == 0, out
    assert "built" not in out and "kept (settings unchanged)" in out
    assert "embedded 0 images (40 already in the store, 40 in all)\n" in out

    code, out = run(tiny, "--backbone", "resnet18", "--finetune-epochs", "1", *SMALL, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["model_reused"] is True and report["embedded"] == 0 and report["already_embedded"] == 40


def test_offline_imagenet_is_a_one_line_error(
    tiny: Workdir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backbone and weights come from iris.toml (no flags); offline, the error says where the file goes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*_args: object, **_kwargs: object) -> dict[str, torch.Tensor]:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(backbones, "_download", offline)
    text = tiny.config.read_text()
    assert 'backbone = "efficientnet_lite0"' in text and 'weights = "imagenet"' in text
    tiny.config.write_text(text.replace('backbone = "efficientnet_lite0"', 'backbone = "resnet34"', 1))
    code, out = run(tiny)
    assert code == 2
    assert out.startswith("iris: error: resnet34: ImageNet weights are not cached") and out.count("\n") == 1
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet34-b627a593.pth") in out


def test_unknown_backbone_is_a_usage_error(tiny: Workdir) -> None:
    code, out = run(tiny, "--backbone", "vgg16")
    assert code == 2 and "resnet18" in out and "efficientnet_lite0" in out


def test_embed_without_images_names_the_stage(tmp_path: Path) -> None:
    workdir = init_workdir(tmp_path / "empty")
    code, out = run(workdir, *SMALL)
    assert code == 2 and "run `iris ingest` first" in out
