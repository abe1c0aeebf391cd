from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage import data

from iris.embed.backbones import build_pixel_net
from iris.embed.encoder import Encoder, default_providers, l2_normalise, load_encoder
from iris.embed.export import export_onnx
from iris.errors import ModelError, StageOrderError
from iris.workdir import Workdir

torch.set_num_threads(1)  # 2 cores shared by several test runs: more threads only spin
SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    net = build_pixel_net("resnet18", weights="none", image_size=SIZE).eval()
    path = export_onnx(net, tmp_path_factory.mktemp("enc") / "embedder.onnx", image_size=SIZE)
    return net, path


def photos() -> list[Image.Image]:
    """Real photos of mixed sizes and modes (RGB, grayscale L, RGBA)."""
    return [
        Image.fromarray(data.chelsea()),
        Image.fromarray(data.camera()),  # L
        Image.fromarray(data.coffee()).convert("RGBA"),
    ]


def test_encode_returns_unit_float32_rows_matching_torch(exported: tuple[torch.nn.Module, Path]) -> None:
    net, path = exported
    encoder = Encoder(path, image_size=SIZE, providers=["CPUExecutionProvider"])
    assert encoder.dim == 512 and encoder.provider == "CPUExecutionProvider"
    vectors = encoder.encode(photos())
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    pixels = np.stack(
        [np.array(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)) for im in photos()]
    )
    with torch.no_grad():
        expected = l2_normalise(net(torch.from_numpy(pixels)).numpy())
    assert np.abs(vectors - expected).max() < 1e-4
    # the encoding is deterministic
    assert float(vectors[0] @ encoder.encode(photos()[:1])[0]) > 0.9999
    assert encoder.encode([]).shape == (0, 512)


def test_encode_pixels_checks_shape(exported: tuple[torch.nn.Module, Path]) -> None:
    encoder = Encoder(exported[1], image_size=SIZE)
    with pytest.raises(ModelError, match=r"expected uint8 pixels"):
        encoder.encode_pixels(np.zeros((1, SIZE + 1, SIZE, 3), np.uint8))


def test_load_encoder_before_embed_is_a_stage_order_error(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path).ensure()
    with pytest.raises(StageOrderError, match="run `iris embed` first"):
        load_encoder(workdir)


def test_load_encoder_reads_the_recorded_image_size(
    exported: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    workdir = Workdir(tmp_path).ensure()
    (workdir.models / "embedder.onnx").write_bytes(exported[1].read_bytes())
    (workdir.models / "embedder.json").write_text(json.dumps({"config": {"image_size": SIZE}}))
    encoder = load_encoder(workdir)
    assert encoder.image_size == SIZE
    assert encoder.encode(photos()[:2]).shape == (2, 512)


def test_providers_prefer_cuda_when_present() -> None:
    providers = default_providers()
    assert providers[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in providers) == (
        "CUDAExecutionProvider" in ort.get_available_providers()
    )


@pytest.mark.gpu
def test_encoder_runs_on_cuda(exported: tuple[torch.nn.Module, Path]) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with a CUDA GPU (CUDAExecutionProvider not available)")
    encoder = Encoder(exported[1], image_size=SIZE)
    assert encoder.provider == "CUDAExecutionProvider"
    cpu = Encoder(exported[1], image_size=SIZE, providers=["CPUExecutionProvider"])
    assert np.abs(encoder.encode(photos()) - cpu.encode(photos())).max() < 1e-3
