from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from skimage import data

from iris.embed.backbones import build_pixel_net
from iris.embed.export import INPUT_NAME, OUTPUT_NAME, check_parity, cpu_session, export_onnx
from iris.errors import ModelError

torch.set_num_threads(1)  # 2 cores shared by several test runs: more threads only spin
SIZE = 32


def real_pixels() -> np.ndarray:
    """Six real photographs from scikit-image, resized to SIZE px: (6, SIZE, SIZE, 3) uint8."""
    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.camera(), data.moon()]
    return np.stack([np.array(Image.fromarray(p).convert("RGB").resize((SIZE, SIZE))) for p in photos])


@pytest.mark.parametrize(("name", "weights"), [("resnet18", "none"), ("efficientnet_lite0", "imagenet")])
def test_export_has_dynamic_batch_and_parity(tmp_path: Path, name: str, weights: str) -> None:
    """Exported graph: one file, dynamic batch, same features as torch; a drifted torch model fails."""
    net = build_pixel_net(name, weights=weights, image_size=SIZE).eval()
    path = export_onnx(net, tmp_path / "embedder.onnx", image_size=SIZE)
    assert path.is_file() and not list(tmp_path.glob("*.data")) and not list(tmp_path.glob("*.tmp"))
    model = onnx.load(str(path))
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")

    pixels = real_pixels()
    report = check_parity(net, path, pixels, tolerance=1e-3)
    assert report.n_images == 6
    assert 0.0 <= report.max_abs_diff < 1e-3

    session = cpu_session(path)
    for n in (1, 5):
        out = session.run([OUTPUT_NAME], {INPUT_NAME: pixels[:n]})[0]
        assert out.shape == (n, net.dim)

    with pytest.raises(ModelError, match="at least one image"):
        check_parity(net, path, pixels[:0], tolerance=1e-3)
    last_bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    with torch.no_grad():
        last_bn.bias.add_(0.5)  # torch now computes something else than the exported graph
    with pytest.raises(ModelError, match=r"disagree by .* above embed.parity_tolerance=0.001"):
        check_parity(net, path, pixels, tolerance=1e-3)
