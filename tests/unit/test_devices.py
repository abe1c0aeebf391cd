"""Device names → ONNX Runtime providers, and the environment report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from iris.cli import main
from iris.devices import CPU, CUDA, describe_devices, format_devices, onnx_providers, parse_device
from iris.embed.backbones import build_pixel_net
from iris.embed.encoder import Encoder
from iris.embed.export import export_onnx
from iris.errors import ConfigError

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("auto", [CPU], [CPU]),
        ("cpu", [CUDA, CPU], [CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
        ("CUDA:1", [CUDA, CPU], [(CUDA, {"device_id": 1}), CPU]),
        ("auto", ["AzureExecutionProvider", CPU], [CPU]),
    ],
)
def test_providers_for_a_device(device: str, available: list[str], expected: list[object]) -> None:
    assert onnx_providers(device, available=available) == expected


def test_cuda_without_the_gpu_wheel_says_how_to_install_it() -> None:
    with pytest.raises(ConfigError, match=r"no CUDA provider.*iris-labeling\[gpu\]"):
        onnx_providers("cuda:0", available=[CPU])


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:", ""])
def test_unknown_device_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda or cuda:N"):
        parse_device(name)


def test_describe_devices_reports_what_onnx_runtime_offers() -> None:
    info = describe_devices()
    json.dumps(info)  # plain data
    ort_info = info["onnxruntime"]
    assert ort_info["providers"] == ort.get_available_providers()
    assert ort_info["auto"] == (CUDA if CUDA in ort_info["providers"] else CPU)
    assert (
        ort_info["package"] in {"onnxruntime", "onnxruntime-gpu"} and ort_info["version"] == ort.__version__
    )
    assert info["torch"]["cuda"] == torch.cuda.is_available()
    lines = format_devices(info)
    assert lines[0].startswith(f"ONNX Runtime: {ort_info['package']} {ort.__version__}")
    assert f"embedding uses {ort_info['auto']}" in lines[0]


def test_describe_devices_notes_a_gpu_that_onnx_runtime_cannot_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake GPU")
    monkeypatch.setattr("iris.devices._available_providers", lambda: [CPU])
    info = describe_devices()
    assert info["torch"]["devices"] == ["Fake GPU"] and info["onnxruntime"]["auto"] == CPU
    assert any("ONNX Runtime has no CUDA provider" in n for n in info["notes"])


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_pixel_net("resnet18", weights="none", image_size=32).eval()
    return export_onnx(net, tmp_path_factory.mktemp("dev") / "embedder.onnx", image_size=32)


def test_encoder_runs_on_the_device_asked_for(onnx_file: Path) -> None:
    encoder = Encoder(onnx_file, image_size=32, device="cpu")
    assert encoder.provider == CPU
    pixels = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert encoder.encode_pixels(pixels).shape == (2, 512)
    auto = Encoder(onnx_file, image_size=32)
    assert auto.provider == (CUDA if CUDA in ort.get_available_providers() else CPU)
    if CUDA not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="no CUDA provider"):
            Encoder(onnx_file, image_size=32, device="cuda")


def test_embed_and_train_take_device() -> None:
    for command in ("embed", "train"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--device" in result.output
    assert "--executor [local|ray]" in CliRunner().invoke(main, ["embed", "--help"]).output
